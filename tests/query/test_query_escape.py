"""A user without SELECT on a table cannot read any byte of it, by any route.

``bob`` has no privilege on ``main.default.orders`` and no USE SCHEMA on ``main.hr``. Every
attempt below must be refused with PERMISSION_DENIED or INVALID_PARAMETER_VALUE, and the
refusal must be in the audit log.
"""

from __future__ import annotations

import pytest
from sql_fixtures import SqlEnv, env

from bastion.errors import BastionError

__all__ = ["env"]

ATTEMPTS = [
    # direct reads, joins, subqueries, CTEs, set operations
    "SELECT * FROM main.default.orders",
    "SELECT ssn FROM orders",
    "SELECT * FROM `main`.`default`.`orders`",
    "SELECT * FROM MAIN.DEFAULT.ORDERS WHERE 1 = 0",
    "SELECT o.ssn FROM main.default.orders o JOIN main.default.orders p ON o.id = p.id",
    "SELECT 1 AS x WHERE EXISTS (SELECT 1 FROM main.default.orders WHERE ssn LIKE '1%')",
    "SELECT (SELECT max(ssn) FROM main.default.orders) AS s",
    "WITH x AS (SELECT * FROM main.default.orders) SELECT * FROM x",
    "WITH orders AS (SELECT 1 AS a) SELECT * FROM main.default.orders",
    "SELECT 1 AS a UNION ALL SELECT id FROM main.default.orders",
    "SELECT * FROM (VALUES (1)) AS v(a), LATERAL (SELECT * FROM main.hr.people)",
    "SELECT * FROM main.hr.people",
    "SELECT * FROM main . hr . `people`",
    # views, functions and tables built on what one may not read
    "CREATE VIEW main.default.bob_view AS SELECT * FROM main.default.orders",
    "CREATE FUNCTION main.default.peek() RETURN (SELECT max(secret) FROM main.hr.people)",
    "CREATE TABLE main.default.stolen AS SELECT * FROM main.hr.people",
    "INSERT INTO main.default.orders SELECT * FROM main.default.orders",
    "DESCRIBE TABLE main.hr.people",
    # catalog and DuckDB internals
    "SELECT * FROM sqlite_master",
    "SELECT * FROM information_schema.secret_tables",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_settings()",
    "SELECT current_setting('memory_limit') AS m",
    "SELECT getvariable('x') AS v",
    "SELECT * FROM main.default.__t1",
    "SELECT * FROM query('SELECT * FROM main.default.orders')",
    "SELECT * FROM query_table('main.default.orders')",
    "SELECT * FROM IDENTIFIER(:t)",
    # files, paths and table functions
    "SELECT * FROM read_parquet('{people}/*.parquet')",
    "SELECT * FROM parquet.`{people}`",
    "SELECT * FROM delta.`{people}`",
    "SELECT * FROM json.`/etc/passwd`",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM glob('{people}/*')",
    "SELECT * FROM main.default.orders VERSION AS OF 0",
    "SELECT * FROM main.default.orders TABLESAMPLE (50 PERCENT)",
    # statements that reach outside the sandbox
    "ATTACH '{people}/x.db' AS x",
    "COPY (SELECT * FROM main.hr.people) TO '/tmp/bastion-leak.csv'",
    "COPY main.default.orders TO '/tmp/bastion-leak.parquet' (FORMAT PARQUET)",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET VAR x = (SELECT max(ssn) FROM main.default.orders)",
    "PRAGMA show_tables",
    "CALL pragma_version()",
    "EXPORT DATABASE '/tmp/bastion-export'",
    "USE CATALOG main",
    # several statements, and privilege changes one may not make
    "SELECT 1; SELECT * FROM main.hr.people",
    "SELECT 1 AS a; ATTACH ':memory:' AS m",
    "GRANT SELECT ON TABLE main.default.orders TO `bob@example.com`",
    "GRANT USE SCHEMA ON SCHEMA main.hr TO `bob@example.com`",
    "ALTER TABLE main.default.orders DROP ROW FILTER",
    "ALTER TABLE main.default.orders ALTER COLUMN ssn DROP MASK",
    "DROP TABLE main.default.orders",
]


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_escape_attempt_is_refused_and_audited(env: SqlEnv, attempt: str) -> None:
    statement = attempt.format(people=env.people_location)
    with pytest.raises(BastionError) as refused:
        env.engine.execute(env.bob, statement, {"t": "main.hr.people"})
    error = refused.value
    assert error.error_code in ("PERMISSION_DENIED", "INVALID_PARAMETER_VALUE"), error.message
    assert "s3cr3t" not in error.message and "111-11" not in error.message
    events = [
        e
        for e in env.audit("bob@example.com")
        if e["request_params"].get("commandText") == statement
    ]
    assert events, f"no audit event for {statement!r}"
    latest = events[0]
    assert latest["service_name"] == "databrickssql"
    assert latest["request_params"]["result"] in ("denied", "refused")
    assert latest["request_params"]["errorCode"] == error.error_code
    assert latest["response"]["statusCode"] == error.status_code


def test_at_least_thirty_escape_attempts() -> None:
    assert len(ATTEMPTS) >= 30


def test_nothing_was_written_outside_the_sandbox(env: SqlEnv) -> None:
    from pathlib import Path

    for path in ("/tmp/bastion-leak.csv", "/tmp/bastion-leak.parquet", "/tmp/bastion-export"):
        assert not Path(path).exists()
    tables = {
        r["table_name"]
        for r in env.sql(env.admin, "SELECT table_name FROM information_schema.tables")
    }
    assert "stolen" not in tables and "bob_view" not in tables


def test_denied_read_is_also_audited_as_a_privilege_decision(env: SqlEnv) -> None:
    with pytest.raises(BastionError):
        env.engine.execute(env.bob, "SELECT count(*) AS n FROM main.default.orders")
    decisions = env.audit("bob@example.com", action="checkPrivilege")
    assert any(
        d["request_params"]["securable_full_name"] == "main.default.orders"
        and d["request_params"]["result"] == "denied"
        for d in decisions
    )
