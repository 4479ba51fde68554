"""Leadership: exactly one process of a deployment runs what must run once.

Every server process (each of ``bastion up --workers N``, each ``bastion serve`` replica)
runs a :class:`LeaderElection`. The one that holds the lease is the *leader*; it runs the
duties that must not run twice (the embedded model workers, replaying write-ahead logs no
live process owns, refreshing budget spend from the usage table). The lease is:

* on PostgreSQL, a session-level **advisory lock** (``pg_try_advisory_lock``) held on a
  connection of its own. PostgreSQL releases it the moment that connection ends — the leader
  exited, crashed or was ``kill -9``-ed (the kernel closes its socket), or, for a host that
  vanished, when TCP keepalives (on, ~15 s) give up on it;
* on SQLite (one host), an exclusive ``flock`` on ``<metastore>.leader.lock``, which the
  kernel releases when the holder dies.

The others try again every ``interval_s`` (2 s): after the leader dies a new one takes over
within about that long and starts the duties anew. A leader that finds its lease gone (its
database connection broke) steps down at once and stops its duties.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

logger = logging.getLogger(__name__)

#: The advisory lock key of the leader lease ("BASTLEAD" in ASCII, as a signed bigint).
LEADER_LOCK_KEY = 0x424153544C454144
_PG_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 5,
}


class Lease:
    """One try-lock that lives as long as this process (or its database session)."""

    def __init__(self, database_url: str, *, key: int = LEADER_LOCK_KEY) -> None:
        url = make_url(database_url)
        self._key = key - (1 << 64) if key >= 1 << 63 else key
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._lock_path: Path | None = None
        self._fd: int | None = None
        if url.get_backend_name() == "postgresql":
            self._engine = create_engine(url, poolclass=NullPool, connect_args=_PG_KEEPALIVES)
        else:
            database = url.database or ":memory:"
            self._lock_path = Path(f"{database}.leader.lock")

    @property
    def held(self) -> bool:
        return self._connection is not None or self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lease if it is free; True if this process holds it now."""
        if self.held:
            return True
        if self._engine is not None:
            connection = self._engine.connect()
            try:
                got = bool(
                    connection.execute(
                        text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
                    ).scalar()
                )
                connection.commit()
            except Exception:
                connection.close()
                raise
            if got:
                self._connection = connection
            else:
                connection.close()
            return got
        assert self._lock_path is not None
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def still_held(self) -> bool:
        """For the holder: whether the lease is still ours (its session is alive)."""
        if self._fd is not None:
            return True
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1")).scalar()
            self._connection.commit()
            return True
        except Exception:
            self._drop_connection()
            return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._connection is not None:
            try:
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                )
                self._connection.commit()
            except Exception:  # the session is gone, and the lock with it
                logger.debug("advisory unlock failed", exc_info=True)
            self._drop_connection()

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                logger.debug("closing the lease connection failed", exc_info=True)

    def close(self) -> None:
        self.release()
        if self._engine is not None:
            self._engine.dispose()


class LeaderElection:
    """Keeps trying to hold the :class:`Lease`; calls ``on_elected`` when this process becomes
    the leader and ``on_deposed`` when it stops being one (lease lost, or shutdown)."""

    def __init__(
        self,
        lease: Lease,
        *,
        on_elected: Callable[[], None],
        on_deposed: Callable[[], None],
        interval_s: float = 2.0,
    ) -> None:
        self.lease = lease
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.interval_s = interval_s
        self.is_leader = False
        self.elections = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> bool:
        """One round (what the thread runs every ``interval_s``); returns ``is_leader``."""
        try:
            if self.is_leader:
                if not self.lease.still_held():
                    logger.warning("lost the leader lease; stepping down")
                    self._depose()
            elif self.lease.try_acquire():
                self.is_leader = True
                self.elections += 1
                logger.info("this process (pid %d) is the leader", os.getpid())
                try:
                    self.on_elected()
                except Exception:
                    logger.exception("starting the leader's duties failed")
        except Exception:  # the database is unreachable: try again next round
            logger.warning("leader election round failed", exc_info=True)
            if self.is_leader and not self.lease.held:
                self._depose()
        return self.is_leader

    def _depose(self) -> None:
        self.is_leader = False
        try:
            self.on_deposed()
        except Exception:
            logger.exception("stopping the leader's duties failed")

    def start(self) -> LeaderElection:
        if self._thread is None:
            self.step()
            self._thread = threading.Thread(target=self._run, name="bastion-leader", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.step()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.is_leader:
            self._depose()
        self.lease.close()
