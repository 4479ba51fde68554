"""Engine creation and migrations for the metastore (SQLite in WAL mode, or PostgreSQL)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from bastion.errors import Unavailable
from bastion.metastore.models import ChangeCounterRow

logger = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: pg_advisory_xact_lock key held while migrating, so that replicas starting together take
#: turns: the first migrates, the others find the schema current ("BASTMIGR" in ASCII).
MIGRATION_LOCK_KEY = 0x424153544D494752


def create_metastore_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL mode, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the metastore schema to the newest migration.

    On PostgreSQL the migration runs under a transaction-scoped advisory lock: replicas that
    start at the same moment migrate one at a time, and all but the first find nothing to do.
    """
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key()})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _lock_key() -> int:
    # A signed 64-bit value, as PostgreSQL's bigint wants.
    return MIGRATION_LOCK_KEY - (1 << 64) if MIGRATION_LOCK_KEY >= 1 << 63 else MIGRATION_LOCK_KEY


def schema_revision(engine: Engine) -> tuple[str | None, str | None]:
    """(the metastore's current migration, the newest migration this code knows)."""
    script = ScriptDirectory.from_config(alembic_config(str(engine.url)))
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, script.get_current_head()


def wait_for_schema(engine: Engine, timeout_s: float = 120.0, poll_s: float = 1.0) -> None:
    """Wait until another process (``bastion up``) has brought the schema to this code's
    newest migration; a replica joining a deployment never migrates by itself.

    Raises :class:`Unavailable` naming both revisions when the wait runs out.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            current, head = schema_revision(engine)
        except Exception as exc:  # no database yet, or not reachable yet
            current, head = None, f"unknown ({type(exc).__name__})"
        if current is not None and current == head:
            return
        if time.monotonic() >= deadline:
            raise Unavailable(
                f"The metastore schema is at migration {current or 'none'}, this Bastion needs "
                f"{head}. Start the deployment with `bastion up` (it migrates), then start "
                "replicas with `bastion serve`."
            )
        logger.info("waiting for the metastore schema (%s, need %s)", current, head)
        time.sleep(poll_s)


class Metastore:
    """The engine and session factory shared by the stores, and the change counter."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        # Grows whenever cached state may be stale: at once for this process's own commits,
        # and when the poller sees another replica's change to the change counter.
        self.generation = 0
        self._seen_version = 0
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._generation_lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def session(self) -> Session:
        return self.sessions()

    def bump_version(self, session: Session) -> None:
        """Record, inside the caller's transaction, that cached state has changed."""
        event.listen(session, "after_commit", self._changed_locally, once=True)
        session.execute(
            update(ChangeCounterRow)
            .where(ChangeCounterRow.id == 1)
            .values(version=ChangeCounterRow.version + 1)
        )

    def current_version(self) -> int:
        with self.session() as session:
            return int(
                session.scalar(select(ChangeCounterRow.version).where(ChangeCounterRow.id == 1))
                or 0
            )

    def add_change_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each of this process's commits that bumped the version
        (e.g. to tell the other replicas at once; see :mod:`bastion.bus`)."""
        self._listeners.append(listener)

    def invalidate(self) -> None:
        """Treat every cached snapshot as stale (another replica changed the metastore)."""
        with self._generation_lock:
            self.generation += 1

    def _changed_locally(self, _session: Session) -> None:
        self.invalidate()
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # a listener must not fail the committed request
                logger.warning("metastore change listener failed", exc_info=True)

    def poll_once(self) -> None:
        version = self.current_version()
        if version != self._seen_version:
            self._seen_version = version
            self.invalidate()

    def start_polling(self, interval_s: float) -> None:
        """Watch the change counter so that other replicas' changes reach this one's caches."""
        if interval_s <= 0 or self._poller is not None:
            return
        # No reading of the counter here: a replica that is starting has already cached
        # things (the identities, the catalog, routing) at the version it had seen, and a
        # change another replica made before now must still invalidate them. The first poll
        # compares against that version (0 at first: one spare rebuild at worst).

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.poll_once()
                except Exception:  # the metastore may be briefly unreachable; try again
                    logger.warning("metastore change poll failed", exc_info=True)

        self._poller = threading.Thread(target=loop, name="bastion-change-poll", daemon=True)
        self._poller.start()

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        self.engine.dispose()
