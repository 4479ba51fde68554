"""Browser login sessions: an HttpOnly cookie bound to a server-side session that can be
revoked (a ``session`` row in the token table, like an OAuth login).

The cookie holds a random value whose hash only is stored. Every request checks the session
against the identity snapshot (in memory, rebuilt on any metastore change), so a logout, a
password change or a disabled user ends it at once — and every token the app proxy forwarded
for it, which carry its id (``sid``).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from http.cookies import SimpleCookie

from bastion.errors import BastionError
from bastion.identity.credentials import hash_token
from bastion.identity.model import Caller
from bastion.platform import Platform

SESSION_COOKIE = "bastion_session"
CSRF_COOKIE = "bastion_csrf"
SESSION_PREFIX = "bstc_"
_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class _Entry:
    session_id: str
    principal_id: int
    expires_at_ms: int | None


def cookies_of(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header: no cookies, not an error page
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(cookie: str | None, submitted: str | None) -> bool:
    return (
        bool(cookie)
        and bool(submitted)
        and hmac.compare_digest(
            str(cookie).encode("utf-8", "surrogatepass"),
            str(submitted).encode("utf-8", "surrogatepass"),
        )
    )


def cookie_header(
    name: str, value: str, *, secure: bool, max_age: int | None, http_only: bool = True
) -> str:
    parts = [f"{name}={value}", "Path=/", "SameSite=Lax"]
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


class BrowserSessions:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def login(self, name: str, password: str, address: str) -> tuple[str, Caller] | None:
        """A new session for valid credentials (throttled per user and address)."""
        platform = self.platform
        platform.throttle.check(name, address)
        principal = platform.identity.check_password(name, password)
        if principal is None:
            platform.throttle.failed(name, address)
            return None
        platform.throttle.succeeded(name, address)
        raw, _record = platform.identity.create_token(
            principal.id,
            kind="session",
            prefix=SESSION_PREFIX,
            lifetime_s=platform.settings.app_session_ttl_s,
            comment="browser login",
        )
        caller = self.caller(raw)
        assert caller is not None
        return raw, caller

    def caller(self, raw: str | None) -> Caller | None:
        """The signed-in caller of a session cookie, or None (unknown, ended or expired)."""
        if not raw or not raw.startswith(SESSION_PREFIX) or len(raw) > 200:
            return None
        key = hash_token(raw)
        entry = self._entries.get(key)
        if entry is None:
            record = self.platform.identity.find_token(raw)
            if record is None or record.kind != "session" or record.revoked_at is not None:
                return None
            entry = _Entry(record.token_id, record.principal_id, record.expires_at)
            with self._lock:
                if len(self._entries) >= _CACHE_SIZE:
                    self._entries.clear()
                self._entries[key] = entry
        if (
            entry.expires_at_ms is not None
            and entry.expires_at_ms <= self.platform.clock.now() * 1000
        ):
            return None
        cache = self.platform.identity_cache
        if not cache.session_live(entry.session_id, entry.principal_id):
            return None
        try:
            return cache.caller(
                entry.principal_id,
                None,
                token_id=entry.session_id,
                credential="oauth",
                session_id=entry.session_id,
            )
        except BastionError:
            return None

    def logout(self, raw: str | None) -> None:
        caller = self.caller(raw)
        if caller is not None and caller.session_id is not None:
            self.platform.identity.end_session(caller.session_id)


def sessions_of(platform: Platform) -> BrowserSessions:
    sessions = getattr(platform, "browser_sessions", None)
    if isinstance(sessions, BrowserSessions):
        return sessions
    sessions = BrowserSessions(platform)
    platform.browser_sessions = sessions  # type: ignore[attr-defined]
    return sessions
