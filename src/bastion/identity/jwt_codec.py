"""Short-lived signed access tokens (JWT, HS256) issued by the OAuth token endpoint."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import jwt

from bastion.clock import Clock
from bastion.errors import Unauthenticated

ISSUER = "bastion"


def load_or_create_key(path: Path) -> bytes:
    """Read the signing key, creating a random one (mode 0600) on first use."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_bytes(key)
    tmp.replace(path)
    return key


@dataclass(frozen=True)
class AccessClaims:
    principal_id: int
    scopes: tuple[str, ...] | None
    expires_at: int
    token_id: str
    issued_at: int = 0
    session_id: str | None = None
    #: The app a forwarded (on-behalf-of-user) token acts through, set only by the app proxy.
    app: str | None = None
    #: The personal access token an on-behalf-of token was issued from (no login session).
    parent_token: str | None = None


class JwtCodec:
    """Issues and verifies access tokens.

    A verified token's claims are remembered under the whole token string (which the signature
    binds to them), so a client re-using its token for an hour pays for the HMAC check once;
    expiry is still checked on every use.
    """

    _CACHE_SIZE = 50_000

    def __init__(self, key: bytes, clock: Clock) -> None:
        self._key = key
        self._clock = clock
        self._verified: dict[str, AccessClaims] = {}

    def issue(
        self,
        principal_id: int,
        scopes: tuple[str, ...] | None,
        ttl_s: int,
        *,
        session_id: str | None = None,
        **extra: str,
    ) -> tuple[str, int]:
        """A signed access token; ``session_id`` ties it to a login session (``sid``), which
        ends it when the session is revoked."""
        now = int(self._clock.now())
        claims: dict[str, object] = {
            "iss": ISSUER,
            "sub": str(principal_id),
            "iat": now,
            "exp": now + ttl_s,
            "jti": secrets.token_hex(8),
            "scope": " ".join(scopes) if scopes is not None else "all-apis",
            **extra,
        }
        if session_id is not None:
            claims["sid"] = session_id
        return jwt.encode(claims, self._key, algorithm="HS256"), now + ttl_s

    def decode(self, token: str) -> AccessClaims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= self._CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = claims
        if claims.expires_at <= self._clock.now():
            raise Unauthenticated("The access token has expired; request a new one.")
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["exp", "sub", "iss"],
                },
            )
        except jwt.PyJWTError:
            raise Unauthenticated("Invalid access token.") from None
        scope = str(claims.get("scope", ""))
        scopes = None if scope == "all-apis" else tuple(scope.split())
        try:
            return AccessClaims(
                principal_id=int(claims["sub"]),
                scopes=scopes,
                expires_at=int(claims["exp"]),
                token_id=str(claims.get("jti", "")),
                issued_at=int(claims.get("iat") or 0),
                session_id=str(claims["sid"]) if claims.get("sid") else None,
                app=str(claims["app"]) if claims.get("app") else None,
                parent_token=str(claims["ptk"]) if claims.get("ptk") else None,
            )
        except (TypeError, ValueError):
            raise Unauthenticated("Invalid access token.") from None
