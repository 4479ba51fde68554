"""Every Ops, Trace and Audit statement runs through governed SQL over HTTP with a viewer's
token, and every panel obeys the same filters."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from payload_data import create_payload_table, sql

from bastion.dashboard.client import NoAccess, Viewer
from bastion.dashboard.queries import (
    OpsQueries,
    Statement,
    audit_statement,
    payload_tables_statement,
    trace_statement,
)
from bastion.dashboard.state import ViewState
from conftest import RunningServer, create_user

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def viewers(shared_server: RunningServer) -> tuple[Viewer, Viewer]:
    with shared_server.admin() as admin:
        create_payload_table(admin, "main.default.dq_payload", "dq", 120, NOW)
        _, alice = create_user(shared_server, "dq-alice@example.com")
        _, bob = create_user(shared_server, "dq-bob@example.com")
        sql(admin, "GRANT SELECT ON TABLE main.default.dq_payload TO `dq-alice@example.com`")
    return (
        Viewer(shared_server.url, alice, "dq-alice@example.com"),
        Viewer(shared_server.url, bob, "dq-bob@example.com"),
    )


def _run(viewer: Viewer, statement):  # type: ignore[no-untyped-def]
    return viewer.query(statement.sql, statement.params)


def test_each_viewer_discovers_only_the_payload_tables_they_may_read(viewers) -> None:  # type: ignore[no-untyped-def]
    alice, bob = viewers
    found = _run(alice, payload_tables_statement())
    assert "dq_payload" in set(found["table_name"])
    assert "dq_payload" not in set(_run(bob, payload_tables_statement())["table_name"])
    with pytest.raises(NoAccess):
        _run(bob, OpsQueries(["main.default.dq_payload"], ViewState()).kpis())


def test_ops_panels_run_and_obey_the_same_filters(viewers) -> None:  # type: ignore[no-untyped-def]
    alice, _ = viewers
    tables = ["main.default.dq_payload"]
    everything = OpsQueries(tables, ViewState(), NOW)
    kpis = _run(alice, everything.kpis()).set_index("win")
    current = kpis.loc["current"]
    assert current["requests"] > 0 and current["errors"] > 0 and current["latency_n"] > 0
    assert current["p50_ms"] <= current["p95_ms"] <= current["p99_ms"]
    assert "previous" in kpis.index
    errors_only = OpsQueries(tables, ViewState(status="error"), NOW)
    only = _run(alice, errors_only.kpis()).set_index("win").loc["current"]
    assert only["requests"] == current["errors"] and only["errors"] == only["requests"]
    series = _run(alice, errors_only.series())
    assert int(series["requests"].sum()) == int(only["requests"])
    rows = _run(alice, errors_only.rows())
    assert len(rows) == min(50, int(only["requests"])) and (rows["status_code"] >= 400).all()
    searched = OpsQueries(tables, ViewState(q="QUESTION 7 "), NOW)
    hits = _run(alice, searched.rows())
    assert len(hits) >= 1 and all("question 7" in r for r in hits["request"])
    groups = _run(alice, everything.groups())
    assert {"requests", "base_requests", "p95_ms"} <= set(groups.columns)
    slowest = _run(alice, everything.outliers())
    above = slowest[slowest["total_duration_ms"] >= current["p99_ms"]]
    naive = Statement(
        "SELECT request_id FROM main.default.dq_payload WHERE request_time >= :start"
        " AND request_time < :end AND total_duration_ms >= :p99"
        " ORDER BY total_duration_ms DESC LIMIT 20",
        {"start": everything.start, "end": everything.end, "p99": float(current["p99_ms"])},
    )
    assert len(above) >= 1
    assert set(above["request_id"]) == set(_run(alice, naive)["request_id"])
    tokyo = _run(alice, OpsQueries(tables, ViewState(tz="Asia/Tokyo"), NOW).series())
    utc = _run(alice, everything.series())
    assert int(tokyo["requests"].sum()) == int(utc["requests"].sum())
    facets = _run(alice, everything.facets())
    assert "dq" in set(facets["endpoint_name"])


def test_kpi_percentiles_are_exact(viewers) -> None:  # type: ignore[no-untyped-def]
    """p50/p95/p99: the smallest latency that at least that share of the window's requests
    does not exceed (what percentile_approx estimates), with n."""
    alice, _ = viewers
    ops = OpsQueries(["main.default.dq_payload"], ViewState(), NOW)
    tile = _run(alice, ops.kpis()).set_index("win").loc["current"]
    every = Statement(
        "SELECT total_duration_ms FROM main.default.dq_payload WHERE request_time >= :start"
        " AND request_time < :end AND total_duration_ms IS NOT NULL",
        {"start": ops.start, "end": ops.end},
    )
    latencies = sorted(int(v) for v in _run(alice, every)["total_duration_ms"])
    assert int(tile["latency_n"]) == len(latencies) > 20
    for column, share in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        assert int(tile[column]) == latencies[math.ceil(share * len(latencies)) - 1]


@pytest.mark.parametrize("period", ["1h", "24h", "7d"])
@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York"])
def test_series_buckets_are_those_of_each_rows_own_local_time(viewers, period, tz) -> None:  # type: ignore[no-untyped-def]
    """The series numbers rows by their UTC quarter hour and converts one time per quarter:
    the same buckets and counts as converting every row (zones at +5:30 and +5:45 too)."""
    alice, _ = viewers
    ops = OpsQueries(["main.default.dq_payload"], ViewState(period=period, tz=tz), NOW)
    unit = ops.state.bucket()
    naive = Statement(
        f"SELECT date_trunc('{unit}', convert_timezone('UTC', '{tz}', request_time)) AS bucket,"
        " count(*) AS requests FROM main.default.dq_payload"
        " WHERE request_time >= :start AND request_time < :end GROUP BY 1 ORDER BY 1",
        {"start": ops.start, "end": ops.end},
    )
    expected = _run(alice, naive)
    got = _run(alice, ops.series())
    assert len(expected) > 0
    assert list(got["bucket"]) == list(expected["bucket"])
    assert list(got["requests"]) == list(expected["requests"])


def test_trace_and_audit_statements_are_valid_sql(shared_server: RunningServer) -> None:
    admin = Viewer(shared_server.url, shared_server.admin_token, "admin")
    assert list(_run(admin, trace_statement("nope", 0)).columns)[:3] == [
        "span_id",
        "parent_span_id",
        "name",
    ]
    audit = _run(admin, audit_statement(ViewState(period="1h")))
    assert {"user", "run_by", "action_name", "status"} <= set(audit.columns)
