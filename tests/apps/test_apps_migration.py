"""Migration 0006 (apps) from the previous schema, with data in it, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from bastion.metastore.db import alembic_config, create_metastore_engine, upgrade


def test_0006_upgrades_a_0005_metastore_with_data_and_downgrades_back(database_url: str) -> None:
    engine = create_metastore_engine(database_url)
    config = alembic_config(database_url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO principals (kind, name, display_name, active, created_at) "
                "VALUES ('user', 'kept@example.com', 'Kept', true, 1)"
            )
        )
    assert "apps" not in sa.inspect(engine).get_table_names()
    upgrade(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"apps", "app_deployments"} <= tables
    with engine.connect() as conn:
        kept = conn.execute(sa.text("SELECT display_name FROM principals")).scalars().all()
        assert kept == ["Kept"]
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0006"
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0005")
    assert "apps" not in sa.inspect(engine).get_table_names()
    assert "principals" in sa.inspect(engine).get_table_names()
    engine.dispose()
