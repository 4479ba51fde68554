"""A real platform (SQLite or PostgreSQL metastore, Delta tables on disk) for the SQL tests.

Users: ``alice@example.com`` (group ``analysts``, SELECT on ``main.default.orders``),
``bob@example.com`` (no grant on it), and the admin. ``main.hr.people`` is readable only by
admins: nobody else has USE SCHEMA on ``main.hr``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from bastion.bootstrap import initialize
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.governance.store import GrantChange
from bastion.identity.model import Caller, PrincipalKind
from bastion.platform import Platform
from bastion.query import QueryEngine
from bastion.tables.columns import arrow_schema, parse_column
from bastion.tables.delta import append, create_table_if_missing
from conftest import BACKENDS, _postgres_database, make_settings

ORDERS = pa.table(
    {
        "id": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
        "region": ["US", "EU", "US", "APAC", "EU", "US"],
        "customer": ["ann", "ben", "cat", "dan", "eve", "fay"],
        "amount": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        "ssn": [
            "111-11-1111",
            "222-22-2222",
            "333-33-3333",
            "444-44-4444",
            "555-55-5555",
            "666-66-6666",
        ],
    }
)
PEOPLE = pa.table(
    {"name": ["root"], "salary": pa.array([999_999], pa.int64()), "secret": ["s3cr3t-value"]}
)


def create_table(platform: Platform, full_name: str, data: pa.Table, owner_id: int) -> Path:
    """Register a managed Delta table and fill it, as the REST route and writer do."""
    columns = [parse_column({"name": f.name, "type_text": _type_text(f.type)}) for f in data.schema]
    location = platform.settings.warehouse_dir.joinpath(*full_name.split(".")).resolve()
    platform.governance.create(
        SecurableType.TABLE,
        full_name,
        owner_id=owner_id,
        created_by="admin",
        properties={
            "table_type": "MANAGED",
            "data_source_format": "DELTA",
            "columns": [c.as_dict(i) for i, c in enumerate(columns)],
            "storage_location": str(location),
        },
    )
    location.mkdir(parents=True)
    table = create_table_if_missing(str(location), arrow_schema(columns), name=full_name)
    append(table, data.cast(arrow_schema(columns)))
    return location


def _type_text(data_type: pa.DataType) -> str:
    return {pa.int64(): "bigint", pa.float64(): "double", pa.string(): "string"}[data_type]


@dataclass
class SqlEnv:
    platform: Platform
    engine: QueryEngine
    admin: Caller
    alice: Caller
    bob: Caller
    people_location: Path

    def caller(self, name: str) -> Caller:
        record = self.platform.authenticator.principal(name)
        assert record is not None
        return self.platform.identity_cache.caller(record.id)

    def grant(
        self, kind: SecurableType, full_name: str, principal: str, *privileges: Privilege
    ) -> None:
        node = self.platform.authorizer.node(kind, full_name)
        who = self.platform.authenticator.principal(principal)
        assert who is not None
        self.platform.governance.update_grants(node.id, [GrantChange(who.id, add=privileges)])

    def sql(
        self, caller: Caller, statement: str, parameters: Any = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        return self.engine.execute(caller, statement, parameters, **kwargs).rows

    def audit(self, user: str, action: str = "executeStatement") -> list[dict[str, Any]]:
        return self.platform.audit.query(action_name=action, user_email=user, limit=1000)


def build_env(home: Path, database_url: str, *, native_scan_bytes: int) -> Iterator[SqlEnv]:
    platform = Platform(make_settings(home, database_url))
    initialize(platform)
    identity = platform.identity
    analysts = identity.create_principal(PrincipalKind.GROUP, "analysts")
    alice = identity.create_principal(PrincipalKind.USER, "alice@example.com")
    bob = identity.create_principal(PrincipalKind.USER, "bob@example.com")
    identity.set_members(analysts.id, add=[alice.id])
    admin = identity.find("admin")
    assert admin is not None
    create_table(platform, "main.default.orders", ORDERS, admin.id)
    platform.governance.create(
        SecurableType.SCHEMA, "main.hr", owner_id=admin.id, created_by="admin"
    )
    people = create_table(platform, "main.hr.people", PEOPLE, admin.id)
    env = SqlEnv(
        platform=platform,
        engine=QueryEngine(platform, timeout_s=30, native_scan_bytes=native_scan_bytes),
        admin=platform.identity_cache.caller(admin.id),
        alice=platform.identity_cache.caller(alice.id),
        bob=platform.identity_cache.caller(bob.id),
        people_location=people,
    )
    env.grant(SecurableType.TABLE, "main.default.orders", "alice@example.com", Privilege.SELECT)
    try:
        yield env
    finally:
        env.engine.close()  # its SQL worker processes
        platform.close()


@pytest.fixture(scope="module", params=BACKENDS)
def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SqlEnv]:
    """One platform per test module (tests that change grants clean up or use own objects).

    Both ways of reading a Delta table run every test: with the SQLite metastore the engine
    scans every table natively (a dedicated database allowed only its Parquet files), with
    PostgreSQL it registers small tables as Arrow datasets in the shared database.
    """
    home = tmp_path_factory.mktemp("sql")
    if request.param == "sqlite":
        yield from build_env(
            home / "home", f"sqlite:///{home / 'metastore.db'}", native_scan_bytes=0
        )
        return
    from conftest import POSTGRES_URL

    if not POSTGRES_URL:
        pytest.skip("BASTION_TEST_POSTGRES_URL is not set")
    urls = _postgres_database()
    url = next(urls)
    yield from build_env(home / "home", url, native_scan_bytes=QueryEngine.NATIVE_SCAN_BYTES)
    for _ in urls:
        pass
