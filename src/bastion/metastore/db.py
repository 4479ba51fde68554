"""Engine creation and migrations for the metastore (SQLite in WAL mode, or PostgreSQL)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, select, update
from sqlalchemy.orm import Session, sessionmaker

from bastion.metastore.models import ChangeCounterRow

logger = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


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
    """Bring the metastore schema to the newest migration."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


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

    def _changed_locally(self, _session: Session) -> None:
        self.generation += 1

    def poll_once(self) -> None:
        version = self.current_version()
        if version != self._seen_version:
            self._seen_version = version
            self.generation += 1

    def start_polling(self, interval_s: float) -> None:
        """Watch the change counter so that other replicas' changes reach this one's caches."""
        if interval_s <= 0 or self._poller is not None:
            return
        self._seen_version = self.current_version()

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
