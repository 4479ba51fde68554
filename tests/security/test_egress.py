"""Hole 4: an ordinary user's URLs reach only public addresses (checked when written and
again on every connection), and upstream error bodies reach only the endpoint's managers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from bastion.bootstrap import initialize
from bastion.platform import Platform
from bastion.serving.control import serving_of
from conftest import RunningServer, ServerThread, create_user, make_settings
from upstream_stub import StubServer, external_entity, external_model, start_stub

EP = "/api/2.0/serving-endpoints"
UC = "/api/2.1/unity-catalog"
INTERNAL = [
    "http://127.0.0.1:{port}/v1",
    "http://localhost:{port}/v1",
    "http://[::1]:{port}/v1",
    "http://[::ffff:127.0.0.1]:{port}/v1",
    "http://2130706433:{port}/v1",
    "http://169.254.169.254/latest/meta-data",
    "http://10.1.2.3/v1",
    "http://192.168.0.10/v1",
    "http://100.64.0.1/v1",
    "http://0.0.0.0:{port}/v1",
]


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub("internal answer")
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[RunningServer]:
    """A server with the default egress policy: no internal host allowed for users."""
    settings = make_settings(
        tmp_path / "home", f"sqlite:///{tmp_path / 'm.db'}", egress_allow_hosts=[]
    )
    platform = Platform(settings)
    initialize(platform)
    try:
        with ServerThread(platform) as url:
            yield RunningServer(url=url, platform=platform)
    finally:
        platform.close()


def _entity(base: str) -> dict[str, Any]:
    return {
        "name": "ext",
        "external_model": {
            "provider": "openai",
            "name": "stub",
            "openai_config": {"openai_api_base": base},
        },
    }


def test_users_cannot_point_the_gateway_at_internal_addresses(
    strict: RunningServer, stub: StubServer
) -> None:
    port = stub.server_address[1]
    _, mallory = create_user(strict, "mallory@example.com")
    with strict.client(mallory) as client:
        body = {"catalog_name": "main", "schema_name": "default", "name": "probe"}
        assert client.post(f"{UC}/models", json=body).status_code == 200
        for template in INTERNAL:
            base = template.format(port=port)
            endpoint = client.post(
                EP, json={"name": "probe", "config": {"served_entities": [_entity(base)]}}
            )
            assert endpoint.status_code == 403, (base, endpoint.text)
            version = client.post(
                f"{UC}/models/versions",
                json={
                    "catalog_name": "main",
                    "schema_name": "default",
                    "model_name": "probe",
                    "external_model": _entity(base)["external_model"],
                },
            )
            assert version.status_code == 403, (base, version.text)
    assert stub.seen_bodies == []
    # An administrator is trusted with the network (local development stays easy).
    with strict.admin() as admin:
        made = admin.post(
            EP, json={"name": "internal", "config": {"served_entities": [external_entity(stub)]}}
        )
        assert made.status_code == 200, made.text


def test_a_stored_user_url_is_checked_again_at_connect_time(
    strict: RunningServer, stub: StubServer
) -> None:
    """A URL that passed when written (a name that resolved publicly then, or a config
    stored before the policy) is checked again on every new connection."""
    _, mallory = create_user(strict, "mallory@example.com")
    with strict.client(mallory) as client:
        base = {"name": "ext", "external_model": {**external_model(stub)}}
        base["external_model"]["openai_config"] = {"openai_api_base": "https://api.example.com/v1"}
        made = client.post(EP, json={"name": "rebind", "config": {"served_entities": [base]}})
        assert made.status_code == 200, made.text
    serving = serving_of(strict.platform)
    record = serving.endpoints.get("rebind")
    config = dict(record.config)
    config["served_entities"] = [external_entity(stub, "ext")]  # now aimed inward
    mallory_id = strict.platform.identity.find("mallory@example.com").id  # type: ignore[union-attr]
    serving.endpoints.update("rebind", config=config, updated_by=mallory_id)
    chat = openai.OpenAI(base_url=f"{strict.url}/serving-endpoints", api_key=mallory, max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        chat.chat.completions.create(model="rebind", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 403
    assert stub.seen_bodies == []


def test_upstream_error_bodies_reach_only_managers(server: RunningServer, stub: StubServer) -> None:
    stub.failure = (401, "<html>internal-auth-portal.corp: token for team-x expired</html>")
    _, mallory = create_user(server, "mallory@example.com")
    with server.admin() as admin:
        body = {"name": "flaky", "config": {"served_entities": [external_entity(stub)]}}
        assert admin.post(EP, json=body).status_code == 200
        acl = {
            "access_control_list": [
                {"user_name": "mallory@example.com", "permission_level": "CAN_QUERY"}
            ]
        }
        assert admin.patch("/api/2.0/permissions/serving-endpoints/flaky", json=acl).is_success

    def ask(token: str) -> httpx.Response:
        with server.client(token) as client:
            return client.post(
                "/serving-endpoints/chat/completions",
                json={"model": "flaky", "messages": [{"role": "user", "content": "hi"}]},
            )

    as_user = ask(mallory)
    assert as_user.status_code == 502
    assert "internal-auth-portal" not in as_user.text and "401" in as_user.text
    as_manager = ask(server.admin_token)
    assert as_manager.status_code == 502
    assert "internal-auth-portal" in as_manager.text


def test_a_server_side_scan_never_follows_the_request_host_header(
    server: RunningServer, stub: StubServer
) -> None:
    """The scan's credential goes only to this server, whatever ``Host`` the client sent."""
    import time

    catcher = start_stub("caught")
    try:
        _, alice = create_user(server, "alice@example.com")
        with server.admin() as admin:
            body = {"name": "target", "config": {"served_entities": [external_entity(stub)]}}
            assert admin.post(EP, json=body).status_code == 200
            acl = {
                "access_control_list": [
                    {"user_name": "alice@example.com", "permission_level": "CAN_QUERY"}
                ]
            }
            assert admin.patch("/api/2.0/permissions/serving-endpoints/target", json=acl)
        spoofed = {"Host": f"127.0.0.1:{catcher.server_address[1]}"}
        with server.client(alice, **spoofed) as client:
            started = client.post(
                "/api/2.0/redteam/scans",
                json={
                    "endpoint": "target",
                    "risk_categories": "violence",
                    "strategies": "baseline",
                    "num_objectives": 1,
                },
            )
            assert started.status_code == 200, started.text
            scan_id = started.json()["scan_id"]
        with server.client(alice) as client:
            deadline = time.monotonic() + 60
            while client.get(f"/api/2.0/redteam/scans/{scan_id}").json()["status"] == "running":
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert catcher.seen_authorization == [] and catcher.seen_bodies == []
        assert stub.seen_bodies, "the scan reached the real endpoint"
    finally:
        catcher.shutdown()
        catcher.server_close()
