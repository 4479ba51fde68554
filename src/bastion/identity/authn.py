"""Turning a presented credential into a :class:`Caller`, from an in-memory snapshot.

The snapshot of principals, group closures and token hashes is rebuilt only when the
metastore's generation moves, so validating a token costs a hash and a few dict look-ups.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from bastion.clock import Clock, SystemClock
from bastion.errors import Unauthenticated
from bastion.identity.credentials import PAT_PREFIX, hash_token
from bastion.identity.jwt_codec import AccessClaims, JwtCodec
from bastion.identity.model import APP_ATTRIBUTE, Caller, PrincipalKind, PrincipalRecord
from bastion.identity.store import IdentityStore, _record, token_record
from bastion.metastore.db import Metastore
from bastion.metastore.models import MembershipRow, PrincipalRow, TokenRow


@dataclass(frozen=True)
class PatEntry:
    principal_id: int
    expires_at: int | None
    scopes: tuple[str, ...] | None
    token_id: str
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass
class IdentitySnapshot:
    generation: int
    principals: dict[int, PrincipalRecord]
    by_name: dict[str, PrincipalRecord]
    group_closure: dict[int, frozenset[int]]
    pats: dict[str, PatEntry]
    #: Ids of the live personal access tokens (an on-behalf-of token ends with its parent).
    pat_ids: frozenset[str] = frozenset()
    #: Live login sessions (id → principal id); JWTs of other sessions are refused.
    sessions: dict[str, int] = field(default_factory=dict)
    #: Principal id → instant (ms) before which its access tokens are refused.
    not_before: dict[int, int] = field(default_factory=dict)
    callers: dict[tuple[int, tuple[str, ...] | None, str | None], Caller] = field(
        default_factory=dict
    )


def _closure(direct: dict[int, set[int]], principal_id: int) -> frozenset[int]:
    seen: set[int] = set()
    stack = list(direct.get(principal_id, ()))
    while stack:
        group_id = stack.pop()
        if group_id not in seen:
            seen.add(group_id)
            stack.extend(direct.get(group_id, ()))
    return frozenset(seen)


class IdentityCache:
    def __init__(self, metastore: Metastore, clock: Clock | None = None) -> None:
        self._metastore = metastore
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._snapshot: IdentitySnapshot | None = None

    def snapshot(self) -> IdentitySnapshot:
        snap = self._snapshot
        if snap is not None and snap.generation == self._metastore.generation:
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is None or snap.generation != self._metastore.generation:
                snap = self._load()
                self._snapshot = snap
            return snap

    def _load(self) -> IdentitySnapshot:
        generation = self._metastore.generation
        with self._metastore.session() as session:
            principals = {r.id: _record(r) for r in session.scalars(select(PrincipalRow))}
            direct: dict[int, set[int]] = {}
            for m in session.scalars(select(MembershipRow)):
                direct.setdefault(m.member_id, set()).add(m.group_id)
            pats: dict[str, PatEntry] = {}
            sessions: dict[str, int] = {}
            for row in session.scalars(
                select(TokenRow).where(
                    TokenRow.kind.in_(("pat", "session")), TokenRow.revoked_at.is_(None)
                )
            ):
                rec = token_record(row)
                if rec.kind == "session":
                    sessions[rec.token_id] = rec.principal_id
                    continue
                pats[row.token_hash] = PatEntry(
                    rec.principal_id,
                    rec.expires_at,
                    rec.scopes,
                    rec.token_id,
                    tuple(sorted(rec.attributes.items())),
                )
            not_before = {
                row.id: row.sessions_not_before
                for row in session.scalars(
                    select(PrincipalRow).where(PrincipalRow.sessions_not_before.is_not(None))
                )
                if row.sessions_not_before is not None
            }
        return IdentitySnapshot(
            generation=generation,
            principals=principals,
            by_name={p.name: p for p in principals.values()},
            group_closure={pid: _closure(direct, pid) for pid in principals},
            pats=pats,
            pat_ids=frozenset(e.token_id for e in pats.values()),
            sessions=sessions,
            not_before=not_before,
        )

    def active_caller(self, principal: int | str) -> Caller | None:
        """The caller for an active principal given by id or name (e.g. whoever wrote a
        config, acting again when it is served); None if it is gone or disabled."""
        snap = self.snapshot()
        record = (
            snap.principals.get(principal)
            if isinstance(principal, int)
            else snap.by_name.get(principal)
        )
        if record is None or not record.active:
            return None
        return self.caller(record.id)

    def session_live(self, session_id: str, principal_id: int) -> bool:
        """A session this snapshot does not know yet (started on another replica since it was
        loaded): ask the metastore, once per snapshot."""
        snap = self.snapshot()
        if session_id in snap.sessions:
            return snap.sessions[session_id] == principal_id
        live = IdentityStore(self._metastore, self._clock).session_live(session_id, principal_id)
        if live:
            snap.sessions[session_id] = principal_id
        return live

    def caller(
        self,
        principal_id: int,
        scopes: tuple[str, ...] | None = None,
        *,
        token_id: str | None = None,
        credential: str = "pat",
        session_id: str | None = None,
        attributes: tuple[tuple[str, str], ...] = (),
    ) -> Caller:
        snap = self.snapshot()
        key = (principal_id, scopes, token_id)
        cached = snap.callers.get(key)
        if cached is not None:
            return cached
        record = snap.principals.get(principal_id)
        if record is None or not record.active:
            raise Unauthenticated("The principal of this credential is missing or disabled.")
        group_ids = snap.group_closure.get(principal_id, frozenset())
        caller = Caller(
            principal_id=principal_id,
            kind=record.kind,
            name=record.name,
            display_name=record.display_name,
            groups=frozenset(snap.principals[g].name for g in group_ids if g in snap.principals),
            group_ids=group_ids,
            scopes=frozenset(scopes) if scopes is not None else None,
            token_id=token_id,
            credential=credential,
            extra=dict(attributes),
            session_id=session_id,
        )
        if len(snap.callers) < 100_000:
            snap.callers[key] = caller
        return caller


#: App name → the scopes a token acting through it may use now (None: no such app).
ActingAppScopes = Callable[[str], frozenset[str] | None]


class Authenticator:
    """Validates personal access tokens and OAuth access tokens."""

    def __init__(self, cache: IdentityCache, codec: JwtCodec, clock: Clock) -> None:
        self._cache = cache
        self._codec = codec
        self._clock = clock
        #: Set by the apps feature. Without it, tokens acting through an app are refused.
        self.acting_app_scopes: ActingAppScopes | None = None

    def authenticate(self, raw: str) -> Caller:
        if raw.startswith(PAT_PREFIX):
            entry = self._cache.snapshot().pats.get(hash_token(raw))
            if entry is None:
                raise Unauthenticated("Invalid access token.")
            if entry.expires_at is not None and entry.expires_at <= self._clock.now() * 1000:
                raise Unauthenticated("The access token has expired; create a new one.")
            return self._cache.caller(
                entry.principal_id,
                entry.scopes,
                token_id=entry.token_id,
                attributes=entry.attributes,
            )
        if raw.count(".") == 2:
            claims = self._codec.decode(raw)
            self._check_session(claims)
            if claims.app is not None:
                return self._acting_through_app(claims, claims.app)
            return self._cache.caller(
                claims.principal_id,
                claims.scopes,
                token_id=claims.token_id,
                credential="oauth",
                session_id=claims.session_id,
            )
        raise Unauthenticated("Invalid access token.")

    def _acting_through_app(self, claims: AccessClaims, app: str) -> Caller:
        """A token the app proxy forwarded for a user: the *user's* grants, within the app's
        scopes as they are now (a narrowed app narrows tokens it already holds), and only
        while the app, and the login session or token it came from, exist."""
        current = self.acting_app_scopes(app) if self.acting_app_scopes is not None else None
        if current is None:
            raise Unauthenticated(f"The app '{app}' this token was issued for no longer exists.")
        if claims.parent_token is not None and (
            claims.parent_token not in self._cache.snapshot().pat_ids
        ):
            raise Unauthenticated("The credential this token was issued from was revoked.")
        scopes = tuple(sorted(set(claims.scopes or ()) & current))
        return self._cache.caller(
            claims.principal_id,
            scopes,
            token_id=claims.token_id,
            credential="oauth",
            session_id=claims.session_id,
            attributes=((APP_ATTRIBUTE, app),),
        )

    def _check_session(self, claims: AccessClaims) -> None:
        """An access token lives only as long as its login session; one without a session
        (issued by the platform to its own agents) never outlives a password change or a
        disable of its principal."""
        snap = self._cache.snapshot()
        sid = claims.session_id
        if sid is None and claims.parent_token is not None:
            return  # an on-behalf-of token from a PAT: checked against its parent instead
        if sid is None:
            not_before = snap.not_before.get(claims.principal_id)
            if not_before is not None and claims.issued_at * 1000 < not_before:
                raise Unauthenticated("The credentials of this principal were reset.")
            return
        if snap.sessions.get(sid) == claims.principal_id:
            return
        if not self._cache.session_live(sid, claims.principal_id):
            raise Unauthenticated("The session of this access token has ended; log in again.")

    def principal(self, name: str) -> PrincipalRecord | None:
        return self._cache.snapshot().by_name.get(name)


def presented_token(headers: Mapping[str, str]) -> str:
    """The credential in ``Authorization: Bearer …`` or ``x-api-key`` (lower-case header keys)."""
    header = headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthenticated("Use 'Authorization: Bearer <token>'.")
    api_key = headers.get("x-api-key")
    if api_key:
        return api_key.strip()
    raise Unauthenticated("Credential was not sent or was of an unsupported type for this API.")


def principal_kind_label(kind: PrincipalKind) -> str:
    return kind.value.replace("_", " ")
