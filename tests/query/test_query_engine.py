"""The engine's SQL surface: queries, parameters, limits, DDL/DML and catalog listings."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pyarrow as pa
import pytest
from sql_fixtures import SqlEnv, create_table, env

from bastion.errors import DeadlineExceeded, InvalidRequest, PermissionDenied
from bastion.query import StatementCanceled

__all__ = ["env"]

KPI = (
    "WITH ranked AS ("
    "  SELECT region, customer, amount,"
    "         row_number() OVER (PARTITION BY region ORDER BY amount DESC) AS rank"
    "  FROM main.default.orders)"
    " SELECT r.region, count(*) AS orders, sum(o.amount) AS revenue,"
    "        max(CASE WHEN r.rank = 1 THEN r.customer END) AS top_customer"
    " FROM ranked r JOIN orders o ON o.customer = r.customer"
    " GROUP BY r.region HAVING count(*) >= 1 ORDER BY revenue DESC"
)


def test_kpi_query_with_cte_window_join_and_aggregates(env: SqlEnv) -> None:
    result = env.engine.execute(env.alice, KPI)
    assert result.statement_type == "SELECT"
    assert not result.truncated
    assert [c.name for c in result.columns] == ["region", "orders", "revenue", "top_customer"]
    assert [(c.type_text, c.type_name) for c in result.columns][1:3] == [
        ("bigint", "LONG"),
        ("double", "DOUBLE"),
    ]
    assert result.rows == [
        {"region": "US", "orders": 3, "revenue": 100.0, "top_customer": "fay"},
        {"region": "EU", "orders": 2, "revenue": 70.0, "top_customer": "eve"},
        {"region": "APAC", "orders": 1, "revenue": 40.0, "top_customer": "dan"},
    ]


def test_databricks_functions_are_transpiled(env: SqlEnv) -> None:
    rows = env.sql(
        env.alice,
        "SELECT date_format(DATE'2024-03-05', 'yyyy-MM') AS month, nvl(NULL, 'x') AS n, "
        "percentile_approx(amount, 0.5) AS p50, collect_set(region) IS NOT NULL AS has, "
        "size(array(1, 2, 3)) AS three, current_user() FROM orders",
    )
    assert rows[0]["month"] == "2024-03"
    assert rows[0]["n"] == "x" and rows[0]["three"] == 3
    assert rows[0]["current_user()"] == "alice@example.com"


def test_named_parameters_are_bound_not_spliced(env: SqlEnv) -> None:
    query = "SELECT id FROM orders WHERE region = :region AND amount >= :min ORDER BY id"
    assert env.sql(env.alice, query, {"region": "US", "min": 30}) == [{"id": 3}, {"id": 6}]
    listed = [
        {"name": "region", "value": "EU"},
        {"name": "min", "value": "25.5", "type": "DOUBLE"},
    ]
    assert env.sql(env.alice, query, listed) == [{"id": 5}]
    injection = {"region": "US' OR '1'='1", "min": 0}
    assert env.sql(env.alice, query, injection) == []
    with pytest.raises(InvalidRequest, match=":min"):
        env.sql(env.alice, query, {"region": "US"})
    with pytest.raises(InvalidRequest, match="not a valid INT"):
        env.sql(
            env.alice,
            query,
            [{"name": "region", "value": "US"}, {"name": "min", "value": "x", "type": "INT"}],
        )
    with pytest.raises(InvalidRequest, match="Positional"):
        env.sql(env.alice, "SELECT id FROM orders WHERE id = ?")


def test_row_limit_truncates(env: SqlEnv) -> None:
    result = env.engine.execute(env.alice, "SELECT id FROM orders ORDER BY id", row_limit=4)
    assert result.truncated and result.table.num_rows == 4
    assert result.table.column("id").to_pylist() == [1, 2, 3, 4]
    full = env.engine.execute(env.alice, "SELECT id FROM orders", row_limit=6)
    assert not full.truncated and full.table.num_rows == 6


def _numbers(env: SqlEnv) -> str:
    name = "main.default.numbers"
    if not env.platform.authorizer.snapshot().by_name.get(("table", name)):  # type: ignore[arg-type]
        create_table(
            env.platform,
            name,
            pa.table({"n": pa.array(range(5000), pa.int64())}),
            env.alice.principal_id,
        )
    return name


HEAVY = (
    "SELECT count(*) AS c FROM {t} a, {t} b, {t} c WHERE (a.n * 7 + b.n * 3 + c.n) % 1000003 = 17"
)


def test_timeout_cancels_a_heavy_query(env: SqlEnv) -> None:
    table = _numbers(env)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="timeout"):
        env.engine.execute(env.alice, HEAVY.format(t=table), timeout_s=0.3)
    assert time.monotonic() - started < 10
    events = env.audit("alice@example.com")
    assert events[0]["request_params"]["errorCode"] == "DEADLINE_EXCEEDED"
    # The engine is usable afterwards.
    assert env.sql(env.alice, f"SELECT count(*) AS c FROM {table}") == [{"c": 5000}]


def test_cancel_event_stops_a_running_query(env: SqlEnv) -> None:
    table = _numbers(env)
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    try:
        with pytest.raises(StatementCanceled):
            env.engine.execute(env.alice, HEAVY.format(t=table), cancel=cancel, timeout_s=60)
    finally:
        timer.cancel()


def test_create_table_as_select_and_insert_append(env: SqlEnv) -> None:
    result = env.engine.execute(
        env.alice,
        "CREATE TABLE main.default.revenue AS "
        "SELECT region, sum(amount) AS revenue, count(*) AS n FROM orders GROUP BY region",
    )
    assert result.statement_type == "CREATE_TABLE"
    assert result.rows == [{"num_affected_rows": 3, "num_inserted_rows": 3}]
    described = {
        r["col_name"]: r["data_type"] for r in env.sql(env.alice, "DESCRIBE main.default.revenue")
    }
    assert described == {"region": "string", "revenue": "double", "n": "bigint"}
    inserted = env.engine.execute(
        env.alice,
        "INSERT INTO main.default.revenue VALUES ('LATAM', 5.5, 1), (:r, :v, 2)",
        {"r": "MEA", "v": 7},
    )
    assert inserted.statement_type == "INSERT" and inserted.rows[0]["num_inserted_rows"] == 2
    env.sql(env.alice, "INSERT INTO main.default.revenue (region, n) SELECT 'NONE', 0")
    rows = env.sql(env.alice, "SELECT region, revenue, n FROM main.default.revenue ORDER BY region")
    assert [r["region"] for r in rows] == ["APAC", "EU", "LATAM", "MEA", "NONE", "US"]
    assert rows[4]["revenue"] is None and rows[3]["revenue"] == 7.0
    with pytest.raises(InvalidRequest, match="3 column"):
        env.sql(env.alice, "INSERT INTO main.default.revenue VALUES (1)")
    with pytest.raises(InvalidRequest, match="cannot store"):
        env.sql(env.alice, "INSERT INTO main.default.revenue VALUES ('x', 'not a number', 1)")
    with pytest.raises(PermissionDenied):
        env.sql(env.bob, "INSERT INTO main.default.revenue VALUES ('x', 1.0, 1)")
    with pytest.raises(InvalidRequest, match="alias"):
        env.sql(env.alice, "CREATE TABLE main.default.unnamed AS SELECT count(*) FROM orders")
    env.sql(
        env.alice, "CREATE TABLE main.default.typed (id BIGINT NOT NULL, note STRING, at TIMESTAMP)"
    )
    env.sql(
        env.alice, "INSERT INTO main.default.typed VALUES (1, 'a', TIMESTAMP'2024-01-01 10:00:00')"
    )
    assert env.sql(env.alice, "SELECT id, note FROM main.default.typed") == [{"id": 1, "note": "a"}]
    env.sql(env.alice, "DROP TABLE main.default.typed")
    with pytest.raises(InvalidRequest, match="TABLE_OR_VIEW_NOT_FOUND"):
        env.sql(env.alice, "SELECT * FROM main.default.typed")


def test_insert_and_ctas_stream_many_batches_and_write_nothing_when_one_fails(
    env: SqlEnv,
) -> None:
    numbers = _numbers(env)
    rows = f"SELECT a.n * 4 + b.n AS i FROM {numbers} a, {numbers} b WHERE b.n < 4"
    created = env.engine.execute(
        env.alice, f"CREATE TABLE main.default.streamed AS SELECT i FROM ({rows}) ORDER BY i"
    )
    assert created.rows == [{"num_affected_rows": 20000, "num_inserted_rows": 20000}]
    inserted = env.engine.execute(
        env.alice, f"INSERT INTO main.default.streamed SELECT i + 20000 FROM ({rows})"
    )
    assert inserted.rows[0]["num_inserted_rows"] == 20000
    count = "SELECT count(*) AS n, count(DISTINCT i) AS d FROM main.default.streamed"
    assert env.sql(env.alice, count) == [{"n": 40000, "d": 40000}]
    # The last row cannot be stored: the batches before it were sent, none is committed.
    bad = (
        "INSERT INTO main.default.streamed SELECT CASE WHEN i < 19999 THEN CAST(i AS STRING) "
        f"ELSE 'x' END FROM ({rows}) ORDER BY i"
    )
    with pytest.raises(InvalidRequest, match="cannot store"):
        env.sql(env.alice, bad)
    assert env.sql(env.alice, count) == [{"n": 40000, "d": 40000}]
    # A query that fails part-way through leaves no table behind.
    failing = (
        "CREATE TABLE main.default.half AS SELECT CAST(CASE WHEN i < 19999 THEN '1' ELSE 'x' "
        f"END AS INT) AS v FROM (SELECT i FROM ({rows}) ORDER BY i)"
    )
    with pytest.raises(InvalidRequest, match=r"Conversion|convert|cast"):
        env.sql(env.alice, failing)
    with pytest.raises(InvalidRequest, match="TABLE_OR_VIEW_NOT_FOUND"):
        env.sql(env.alice, "SELECT * FROM main.default.half")
    assert not (env.platform.settings.warehouse_dir / "main" / "default" / "half").exists()
    env.sql(env.alice, "DROP TABLE main.default.streamed")


def test_sum_of_integers_keeps_exact_values(env: SqlEnv) -> None:
    rows = env.sql(env.alice, "SELECT sum(id) AS s FROM orders")
    assert rows[0]["s"] in (21, Decimal(21))


def test_show_describe_and_information_schema_list_only_what_the_caller_may_see(
    env: SqlEnv,
) -> None:
    assert {r["catalog"] for r in env.sql(env.bob, "SHOW CATALOGS")} == {"main"}
    assert {r["catalog"] for r in env.sql(env.admin, "SHOW CATALOGS")} == {"main", "system"}
    alice_tables = {r["tableName"] for r in env.sql(env.alice, "SHOW TABLES IN main.default")}
    bob_tables = {r["tableName"] for r in env.sql(env.bob, "SHOW TABLES")}
    assert "orders" in alice_tables and "orders" not in bob_tables
    assert env.sql(env.alice, "SHOW TABLES IN main.hr") == []
    assert {r["tableName"] for r in env.sql(env.admin, "SHOW TABLES IN main.hr")} == {"people"}
    assert env.sql(env.alice, "SHOW TABLES LIKE 'ord*'") == [
        {"database": "default", "tableName": "orders", "isTemporary": False}
    ]
    columns = env.sql(
        env.alice,
        "SELECT table_name, column_name, full_data_type FROM main.information_schema.columns "
        "WHERE table_name IN ('orders', 'people') ORDER BY ordinal_position",
    )
    assert [c["column_name"] for c in columns] == ["id", "region", "customer", "amount", "ssn"]
    assert (
        env.sql(env.bob, "SELECT * FROM information_schema.columns WHERE table_name = 'orders'")
        == []
    )
    everything = env.sql(
        env.admin, "SELECT table_catalog, table_name FROM system.information_schema.tables"
    )
    assert {"people", "orders", "audit"} <= {r["table_name"] for r in everything}
    privileges = env.sql(
        env.alice,
        "SELECT grantee, privilege_type FROM information_schema.table_privileges "
        "WHERE table_name = 'orders'",
    )
    assert privileges == [{"grantee": "alice@example.com", "privilege_type": "SELECT"}]
    schemata = {
        r["schema_name"] for r in env.sql(env.bob, "SELECT * FROM information_schema.schemata")
    }
    assert "default" in schemata
    with pytest.raises(PermissionDenied):
        env.sql(env.bob, "DESCRIBE main.default.orders")
    described = env.sql(env.alice, "DESCRIBE TABLE EXTENDED main.default.orders")
    assert described[0] == {"col_name": "id", "data_type": "bigint", "comment": None}
    assert {"col_name": "Owner", "data_type": "admin", "comment": ""} in described
    assert not any("warehouse" in str(r["data_type"]) for r in described)


def test_successful_statements_are_audited_with_what_they_read(env: SqlEnv) -> None:
    statement = "SELECT count(*) AS n FROM main.default.orders WHERE region = :r"
    env.sql(env.alice, statement, {"r": "US"})
    event = next(
        e for e in env.audit("alice@example.com") if e["request_params"]["commandText"] == statement
    )
    params = event["request_params"]
    assert params["result"] == "allowed" and params["statementType"] == "SELECT"
    assert params["tablesRead"] == "main.default.orders"
    assert params["parameters"] == "r" and params["rows"] == "1"
    assert event["response"]["statusCode"] == 200


def test_syntax_errors_and_unsupported_statements(env: SqlEnv) -> None:
    with pytest.raises(InvalidRequest, match="Syntax error"):
        env.sql(env.alice, "SELEC 1 FROM")
    with pytest.raises(InvalidRequest, match="empty"):
        env.sql(env.alice, "  ;  ")
    with pytest.raises(InvalidRequest, match="UPDATE statements are not supported"):
        env.sql(env.alice, "UPDATE orders SET amount = 0")
    with pytest.raises(InvalidRequest, match="nonexistent"):
        env.sql(env.alice, "SELECT nonexistent FROM orders")
