"""The dashboard's view state and computations, on clean and on malformed data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from bastion.dashboard.analysis import (
    Skipped,
    asr_table,
    kpis,
    rank_groups,
    results_frame,
    scan_outcome,
    span_tree,
)
from bastion.dashboard.client import Viewer
from bastion.dashboard.state import ViewState


def test_the_view_state_round_trips_through_the_url_and_refuses_malformed_values() -> None:
    state = ViewState(
        page="risk",
        period="7d",
        endpoint="kyoto-bot",
        tz="Asia/Tokyo",
        status="error",
        q="price",
        scan="abc123",
        row="r-1",
    )
    assert ViewState.from_params(state.to_params()) == state
    assert ViewState().to_params() == {}
    hostile = {
        "page": "admin",
        "period": "99y",
        "tz": "Mars/Olympus",
        "status": "'; DROP",
        "endpoint": "x' OR 1=1 --",
        "row": "<script>",
        "start": "yesterday",
    }
    assert ViewState.from_params(hostile) == ViewState()


def test_windows_and_buckets() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    state = ViewState(period="24h")
    start, end = state.window(now)
    assert end - start == timedelta(hours=24) and end == now
    assert state.previous_window(now) == (start - timedelta(hours=24), start)
    assert state.bucket(now) == "HOUR" and ViewState(period="1h").bucket(now) == "MINUTE"
    explicit = ViewState(start="2026-01-01T00:00:00+09:00", end="2026-01-01T06:00:00+09:00")
    assert explicit.window(now)[0] == datetime(2025, 12, 31, 15, 0, tzinfo=UTC)


def test_kpis_have_deltas_and_survive_missing_values() -> None:
    frame = pd.DataFrame(
        [
            {
                "win": "current",
                "requests": 100,
                "errors": 5,
                "p50_ms": 100,
                "p95_ms": 300,
                "p99_ms": 900,
                "latency_n": 98,
                "input_tokens": 1000,
                "output_tokens": None,
                "users": 3,
            },
            {
                "win": "previous",
                "requests": 50,
                "errors": 10,
                "p50_ms": None,
                "p95_ms": "bad",
                "p99_ms": 800,
                "latency_n": 50,
                "input_tokens": 10,
                "output_tokens": 5,
                "users": 2,
            },
        ]
    )
    tiles = {k.label: k for k in kpis(frame)}
    assert tiles["Requests"].delta == 50
    assert tiles["Error rate"].value == 5.0 and tiles["Error rate"].delta == -15.0
    assert tiles["p95 latency"].n == 98 and tiles["p95 latency"].delta is None
    assert tiles["Output tokens"].value == 0.0
    assert kpis(pd.DataFrame())[0].value == 0.0  # no rows at all: zeros, not an exception


def test_anomalies_rank_groups_against_their_own_baseline() -> None:
    frame = pd.DataFrame(
        [
            {
                "endpoint_name": "a",
                "model_version": "2",
                "requester": "u",
                "requests": 100,
                "errors": 30,
                "base_requests": 100,
                "base_errors": 1,
                "p95_ms": 200,
                "base_p95_ms": 190,
            },
            {
                "endpoint_name": "b",
                "model_version": "1",
                "requester": "v",
                "requests": 100,
                "errors": 1,
                "base_requests": 100,
                "base_errors": 1,
                "p95_ms": 900,
                "base_p95_ms": 100,
            },
            {
                "endpoint_name": "c",
                "model_version": None,
                "requester": None,
                "requests": "x",
                "errors": None,
                "base_requests": 0,
                "base_errors": 0,
                "p95_ms": None,
                "base_p95_ms": None,
            },
        ]
    )
    ranked = rank_groups(frame)
    assert [(a.endpoint, a.kind) for a in ranked] == [("a", "error spike"), ("b", "latency")]
    assert "30%" in ranked[0].why


def test_scans_that_ran_nothing_or_errored_are_failed_not_zero_asr() -> None:
    assert scan_outcome({"status": "SUCCEEDED", "total": 0, "asr": 0.0}) == "failed"
    assert scan_outcome({"status": "FAILED", "total": 10}) == "failed"
    assert scan_outcome({"status": "SUCCEEDED", "total": 10, "evaluated": 10}) == "succeeded"
    assert scan_outcome({"status": "RUNNING"}) == "running"


def test_results_keep_errors_out_of_asr_and_say_what_was_skipped() -> None:
    skipped = Skipped()
    frame = results_frame(
        [
            {"risk_category": "violence", "strategy": "base64", "attack_success": True},
            {"risk_category": "violence", "strategy": "base64", "attack_success": False},
            {"risk_category": "violence", "strategy": "base64", "error": "timeout"},
            "garbage",
            {"risk_category": None, "strategy": "rot13", "attack_success": None},
        ],
        skipped,
    )
    table = asr_table(frame, ["risk_category", "strategy"])
    assert table.iloc[0]["n"] == 2 and table.iloc[0]["asr"] == 0.5
    assert skipped.total == 3 and "malformed" in skipped.describe()


def test_span_trees_survive_orphans_and_cycles() -> None:
    spans = pd.DataFrame(
        [
            {"span_id": "root", "parent_span_id": None, "name": "POST /chat"},
            {"span_id": "a", "parent_span_id": "root", "name": "authenticate"},
            {"span_id": "b", "parent_span_id": "root", "name": "upstream attempt 1"},
            {"span_id": "c", "parent_span_id": "b", "name": "agent tool"},
            {"span_id": "orphan", "parent_span_id": "not-on-this-page", "name": "late"},
            {"span_id": None, "parent_span_id": "root", "name": "malformed"},
            {"span_id": "x", "parent_span_id": "y", "name": "cycle-x"},
            {"span_id": "y", "parent_span_id": "x", "name": "cycle-y"},
        ]
    )
    tree = [(depth, span["name"]) for depth, span in span_tree(spans)]
    assert tree[:5] == [
        (0, "POST /chat"),
        (1, "authenticate"),
        (1, "upstream attempt 1"),
        (2, "agent tool"),
        (0, "late"),
    ]
    assert "malformed" not in [name for _, name in tree]


def test_the_viewer_comes_from_the_proxy_or_fails_closed() -> None:
    env = {"BASTION_HOST": "http://h:1", "BASTION_CLIENT_ID": "app", "BASTION_CLIENT_SECRET": "s"}
    headers = {"x-forwarded-access-token": "t1", "x-forwarded-user": "ana"}
    viewer = Viewer.from_request(headers, env)
    assert viewer is not None and viewer.token == "t1" and viewer.user == "ana"
    assert Viewer.from_request({}, env) is None  # never the app's own credentials
    dev = Viewer.from_request({}, {**env, "BASTION_DASHBOARD_DEV_TOKEN": "dev"})
    assert dev is not None and dev.token == "dev"
    other = Viewer.from_request({"x-forwarded-access-token": "t2", "x-forwarded-user": "bo"}, env)
    assert other is not None and other.cache_key != viewer.cache_key
