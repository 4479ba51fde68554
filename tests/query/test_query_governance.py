"""Row filters, column masks, views with owner's rights, SQL functions and GRANT/REVOKE."""

from __future__ import annotations

import pyarrow as pa
import pytest
from sql_fixtures import ORDERS, SqlEnv, create_table, env

from bastion.errors import InvalidRequest, PermissionDenied
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType

__all__ = ["env"]


def _table(env: SqlEnv, name: str, data: pa.Table = ORDERS) -> str:
    full_name = f"main.default.{name}"
    create_table(env.platform, full_name, data, env.admin.principal_id)
    return full_name


def test_row_filter_and_mask_give_two_users_different_rows_and_values(env: SqlEnv) -> None:
    table = _table(env, "filtered_orders")
    env.grant(SecurableType.TABLE, table, "alice@example.com", Privilege.SELECT)
    env.grant(SecurableType.TABLE, table, "bob@example.com", Privilege.SELECT)
    env.sql(
        env.admin,
        "CREATE FUNCTION main.default.region_filter(region STRING) "
        "RETURN is_account_group_member('admins') "
        "OR (is_account_group_member('analysts') AND region = 'US') "
        "OR (current_user() = 'bob@example.com' AND region = 'EU')",
    )
    env.sql(
        env.admin,
        "CREATE FUNCTION main.default.ssn_mask(ssn STRING) RETURNS STRING "
        "RETURN CASE WHEN is_account_group_member('admins') THEN ssn "
        "ELSE concat('***-**-', substr(ssn, 8, 4)) END",
    )
    env.sql(env.admin, f"ALTER TABLE {table} SET ROW FILTER main.default.region_filter ON (region)")
    env.sql(env.admin, f"ALTER TABLE {table} ALTER COLUMN ssn SET MASK main.default.ssn_mask")

    query = f"SELECT id, region, ssn FROM {table} ORDER BY id"
    alice = env.sql(env.alice, query)
    bob = env.sql(env.bob, query)
    admin = env.sql(env.admin, query)
    assert [r["id"] for r in alice] == [1, 3, 6]
    assert {r["region"] for r in alice} == {"US"}
    assert [r["id"] for r in bob] == [2, 5]
    assert [r["ssn"] for r in bob] == ["***-**-2222", "***-**-5555"]
    assert [r["ssn"] for r in admin] == ORDERS.column("ssn").to_pylist()
    # The mask replaces the column everywhere, predicates included: no probing raw values.
    assert env.sql(env.bob, f"SELECT id FROM {table} WHERE ssn = '222-22-2222'") == []
    assert env.sql(env.bob, f"SELECT count(*) AS n FROM {table} WHERE region = 'US'") == [{"n": 0}]
    # Filters also apply inside joins, CTEs and aggregates.
    rows = env.sql(
        env.alice,
        f"WITH t AS (SELECT * FROM {table}) SELECT count(*) AS n, sum(a.amount) AS s "
        f"FROM t a JOIN {table} b ON a.id = b.id",
    )
    assert rows == [{"n": 3, "s": 100.0}]
    described = env.sql(env.admin, f"DESCRIBE EXTENDED {table}")
    assert any(r["col_name"] == "Row Filter" for r in described)

    env.sql(env.admin, f"ALTER TABLE {table} DROP ROW FILTER")
    env.sql(env.admin, f"ALTER TABLE {table} ALTER COLUMN ssn DROP MASK")
    rows = env.sql(env.bob, query)
    assert len(rows) == 6 and rows[0]["ssn"] == "111-11-1111"


def test_mask_using_other_columns(env: SqlEnv) -> None:
    table = _table(env, "masked_by_region")
    env.grant(SecurableType.TABLE, table, "alice@example.com", Privilege.SELECT)
    env.sql(
        env.admin,
        "CREATE FUNCTION main.default.mask_outside_eu(customer STRING, region STRING) "
        "RETURN IF(region = 'EU', customer, 'hidden')",
    )
    env.sql(
        env.admin,
        f"ALTER TABLE {table} ALTER COLUMN customer SET MASK main.default.mask_outside_eu "
        "USING COLUMNS (region)",
    )
    rows = env.sql(env.alice, f"SELECT customer, region FROM {table} ORDER BY id")
    assert [r["customer"] for r in rows] == ["hidden", "ben", "hidden", "hidden", "eve", "hidden"]


def test_only_owner_or_manage_may_set_filters_and_needs_execute(env: SqlEnv) -> None:
    table = _table(env, "not_alices")
    env.sql(env.alice, "CREATE FUNCTION main.default.alice_true(x STRING) RETURN true")
    with pytest.raises(PermissionDenied, match="ownership or MANAGE"):
        env.sql(
            env.alice, f"ALTER TABLE {table} SET ROW FILTER main.default.alice_true ON (region)"
        )
    env.sql(env.alice, "CREATE TABLE main.default.alices AS SELECT 1 AS id, 'US' AS region")
    env.sql(env.admin, "CREATE FUNCTION main.default.admin_only(x STRING) RETURN false")
    with pytest.raises(PermissionDenied, match="EXECUTE"):
        env.sql(
            env.alice,
            "ALTER TABLE main.default.alices SET ROW FILTER main.default.admin_only ON (region)",
        )
    with pytest.raises(InvalidRequest, match="argument"):
        env.sql(
            env.alice,
            "ALTER TABLE main.default.alices SET ROW FILTER main.default.alice_true "
            "ON (id, region)",
        )
    env.sql(
        env.alice,
        "ALTER TABLE main.default.alices SET ROW FILTER main.default.alice_true ON (region)",
    )
    assert env.sql(env.alice, "SELECT id FROM main.default.alices") == [{"id": 1}]


def test_view_reader_needs_only_select_on_the_view(env: SqlEnv) -> None:
    env.sql(
        env.alice,
        "CREATE VIEW main.default.us_totals COMMENT 'per customer' AS "
        "SELECT customer, sum(amount) AS total FROM main.default.orders "
        "WHERE region = 'US' GROUP BY customer",
    )
    with pytest.raises(PermissionDenied, match="us_totals"):
        env.sql(env.bob, "SELECT * FROM main.default.us_totals")
    env.sql(env.alice, "GRANT SELECT ON VIEW main.default.us_totals TO `bob@example.com`")
    rows = env.sql(env.bob, "SELECT customer, total FROM us_totals ORDER BY customer")
    assert rows == [
        {"customer": "ann", "total": 10.0},
        {"customer": "cat", "total": 30.0},
        {"customer": "fay", "total": 60.0},
    ]
    # Still no direct access to the base table.
    with pytest.raises(PermissionDenied):
        env.sql(env.bob, "SELECT * FROM main.default.orders")
    # The view runs with its owner's rights: when the owner loses SELECT, so do readers.
    node = env.platform.authorizer.node(SecurableType.TABLE, "main.default.orders")
    from bastion.governance.store import GrantChange

    env.platform.governance.update_grants(
        node.id, [GrantChange(env.alice.principal_id, remove=(Privilege.SELECT,))]
    )
    try:
        with pytest.raises(PermissionDenied, match=r"alice@example\.com"):
            env.sql(env.bob, "SELECT * FROM main.default.us_totals")
    finally:
        env.grant(SecurableType.TABLE, "main.default.orders", "alice@example.com", Privilege.SELECT)
    env.sql(env.alice, "REVOKE SELECT ON VIEW main.default.us_totals FROM `bob@example.com`")
    with pytest.raises(PermissionDenied):
        env.sql(env.bob, "SELECT * FROM main.default.us_totals")


def test_dynamic_view_evaluates_identity_as_the_reader(env: SqlEnv) -> None:
    env.sql(
        env.admin,
        "CREATE VIEW main.default.who_sees AS SELECT id, "
        "CASE WHEN is_account_group_member('analysts') THEN customer ELSE 'redacted' END "
        "AS customer, "
        "current_user() AS reader FROM main.default.orders WHERE id <= 2",
    )
    env.sql(env.admin, "GRANT SELECT ON TABLE main.default.who_sees TO `users`")
    alice = env.sql(env.alice, "SELECT * FROM main.default.who_sees ORDER BY id")
    bob = env.sql(env.bob, "SELECT * FROM main.default.who_sees ORDER BY id")
    assert [r["customer"] for r in alice] == ["ann", "ben"]
    assert [r["customer"] for r in bob] == ["redacted", "redacted"]
    assert {r["reader"] for r in bob} == {"bob@example.com"}


def test_view_over_a_filtered_table_filters_as_the_invoker(env: SqlEnv) -> None:
    table = _table(env, "filtered_base")
    env.sql(
        env.admin,
        "CREATE FUNCTION main.default.only_me(customer STRING) "
        "RETURN customer = 'ben' OR is_account_group_member('analysts')",
    )
    env.sql(env.admin, f"ALTER TABLE {table} SET ROW FILTER main.default.only_me ON (customer)")
    env.sql(env.admin, f"CREATE VIEW main.default.filtered_view AS SELECT id FROM {table}")
    env.sql(env.admin, "GRANT SELECT ON TABLE main.default.filtered_view TO `users`")
    assert len(env.sql(env.alice, "SELECT * FROM main.default.filtered_view")) == 6
    assert env.sql(env.bob, "SELECT * FROM main.default.filtered_view") == [{"id": 2}]
    assert len(env.sql(env.admin, "SELECT * FROM main.default.filtered_view")) == 1


def test_views_and_functions_need_their_privileges(env: SqlEnv) -> None:
    env.sql(
        env.alice,
        "CREATE FUNCTION main.default.with_tax(amount DOUBLE) RETURNS DOUBLE "
        "RETURN round(amount * 1.2, 2)",
    )
    rows = env.sql(env.alice, "SELECT main.default.with_tax(amount) AS t FROM orders WHERE id = 1")
    assert rows == [{"t": 12.0}]
    assert env.sql(env.alice, "SELECT with_tax(10.0) AS t") == [{"t": 12.0}]
    with pytest.raises(PermissionDenied, match="EXECUTE"):
        env.sql(env.bob, "SELECT main.default.with_tax(1.0) AS t")
    env.sql(env.alice, "GRANT EXECUTE ON FUNCTION main.default.with_tax TO `bob@example.com`")
    assert env.sql(env.bob, "SELECT with_tax(1.0) AS t") == [{"t": 1.2}]
    shown = env.sql(env.bob, "SHOW FUNCTIONS IN main.default LIKE 'with*'")
    assert shown == [{"function": "main.default.with_tax"}]
    with pytest.raises(InvalidRequest, match="Only SQL scalar functions"):
        env.sql(
            env.alice,
            "CREATE FUNCTION main.default.py(x INT) RETURNS INT LANGUAGE PYTHON AS $$ return 1 $$",
        )
    with pytest.raises(InvalidRequest, match="unknown"):
        env.sql(env.alice, "CREATE FUNCTION main.default.bad(x INT) RETURN y + 1")
    with pytest.raises(InvalidRequest):
        env.sql(env.alice, "CREATE FUNCTION main.default.files(x STRING) RETURN read_text(x)")


def test_grant_and_revoke_in_sql(env: SqlEnv) -> None:
    env.sql(env.alice, "CREATE TABLE main.default.alice_data AS SELECT 1 AS id, 'x' AS v")
    with pytest.raises(PermissionDenied):
        env.sql(env.bob, "SELECT * FROM main.default.alice_data")
    env.sql(env.alice, "GRANT SELECT, MODIFY ON TABLE main.default.alice_data TO `bob@example.com`")
    assert env.sql(env.bob, "SELECT v FROM main.default.alice_data") == [{"v": "x"}]
    env.sql(env.bob, "INSERT INTO main.default.alice_data VALUES (2, 'y')")
    grants = env.sql(env.alice, "SHOW GRANTS ON TABLE main.default.alice_data")
    assert {(g["principal"], g["action_type"]) for g in grants} == {
        ("bob@example.com", "SELECT"),
        ("bob@example.com", "MODIFY"),
    }
    env.sql(env.alice, "REVOKE MODIFY ON TABLE main.default.alice_data FROM `bob@example.com`")
    with pytest.raises(PermissionDenied, match="MODIFY"):
        env.sql(env.bob, "INSERT INTO main.default.alice_data VALUES (3, 'z')")
    env.sql(env.alice, "REVOKE SELECT ON main.default.alice_data FROM `bob@example.com`")
    with pytest.raises(PermissionDenied):
        env.sql(env.bob, "SELECT * FROM main.default.alice_data")
    # Multi-word privileges and groups, by an admin.
    env.sql(env.admin, "GRANT USE SCHEMA ON SCHEMA main.hr TO analysts")
    env.sql(env.admin, "REVOKE USE SCHEMA ON SCHEMA main.hr FROM analysts")
    with pytest.raises(InvalidRequest, match="does not exist"):
        env.sql(env.alice, "GRANT SELECT ON TABLE main.default.alice_data TO `nobody@example.com`")
    with pytest.raises(InvalidRequest, match="does not apply"):
        env.sql(env.alice, "GRANT EXECUTE ON TABLE main.default.alice_data TO `bob@example.com`")
