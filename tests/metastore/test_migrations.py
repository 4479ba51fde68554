from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from bastion.metastore.db import alembic_config, create_metastore_engine, upgrade
from bastion.metastore.models import Base


def test_upgrade_from_blank_database_matches_models(database_url: str) -> None:
    engine = create_metastore_engine(database_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        counter = conn.execute(sa.text("SELECT version FROM change_counter")).scalar()
    assert diff == []
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert version == head
    assert counter == 1
    engine.dispose()


def test_downgrade_then_upgrade_round_trips(database_url: str) -> None:
    engine = create_metastore_engine(database_url)
    upgrade(engine)
    config = alembic_config(database_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert "principals" not in sa.inspect(engine).get_table_names()
    upgrade(engine)
    assert "principals" in sa.inspect(engine).get_table_names()
    upgrade(engine)  # idempotent
    engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_metastore_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
