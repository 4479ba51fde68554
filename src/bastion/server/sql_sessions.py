"""SQL sessions of the Statement Execution API (``/api/2.0/sql/sessions``).

databricks-sql-connector's Statement Execution backend opens a session per connection and
names it in every statement. A session here holds no server state beyond its owner and its
defaults, so it is cheap; it belongs to the principal that created it (anyone else is told it
does not exist), each principal may hold a bounded number, and idle ones are closed.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from bastion.errors import InvalidRequest, NotFound, RateLimited
from bastion.identity.model import Caller

#: Bastion resolves short names in ``main.default``; other session defaults are refused
#: rather than silently ignored.
DEFAULT_CATALOG = "main"
DEFAULT_SCHEMA = "default"


def check_defaults(catalog: str | None, schema: str | None) -> None:
    """Refuse a default catalog or schema other than the one Bastion resolves short names in."""
    if catalog not in (None, "", DEFAULT_CATALOG) or schema not in (None, "", DEFAULT_SCHEMA):
        raise InvalidRequest(
            "Bastion resolves unqualified table names in main.default only; leave catalog and "
            "schema unset (or main/default) and qualify names as catalog.schema.table."
        )


@dataclass
class SqlSession:
    session_id: str
    principal_id: int
    warehouse_id: str | None
    confs: dict[str, str] = field(default_factory=dict)
    used: float = field(default_factory=time.monotonic)


class SessionStore:
    """Open sessions, by id; thread-safe."""

    def __init__(self, *, max_per_principal: int = 64, idle_s: float = 3600.0) -> None:
        self._sessions: dict[str, SqlSession] = {}
        self._lock = threading.Lock()
        self._max = max_per_principal
        self._idle_s = idle_s

    def _expire(self, now: float) -> None:
        """Close idle sessions (lock held)."""
        for key in [k for k, s in self._sessions.items() if now - s.used > self._idle_s]:
            del self._sessions[key]

    def create(
        self,
        caller: Caller,
        warehouse_id: str | None,
        confs: dict[str, str] | None,
        catalog: str | None,
        schema: str | None,
    ) -> SqlSession:
        check_defaults(catalog, schema)
        session = SqlSession(
            secrets.token_hex(16), caller.principal_id, warehouse_id, dict(confs or {})
        )
        with self._lock:
            self._expire(time.monotonic())
            mine = sum(1 for s in self._sessions.values() if s.principal_id == caller.principal_id)
            if mine >= self._max:
                raise RateLimited(
                    f"You have {mine} open SQL sessions, the most allowed per user; close one "
                    "(DELETE /api/2.0/sql/sessions/{session_id}) and retry."
                )
            self._sessions[session.session_id] = session
        return session

    def use(self, caller: Caller, session_id: str) -> SqlSession:
        """The caller's session ``session_id``, marked used; ``NotFound`` for anyone else's."""
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            session = self._sessions.get(session_id)
            if session is None or session.principal_id != caller.principal_id:
                raise NotFound(f"Session '{session_id}' does not exist or was closed.")
            session.used = now
            return session

    def close(self, caller: Caller, session_id: str) -> None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.principal_id != caller.principal_id:
                raise NotFound(f"Session '{session_id}' does not exist or was closed.")
            del self._sessions[session_id]
