"""Hole 2: an endpoint's payload table is created with it, owned by its owner, bound to it,
and never adopted from a user or shared with another endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from conftest import RunningServer, create_user
from upstream_stub import StubServer, external_entity, start_stub

EP = "/api/2.0/serving-endpoints"
UC = "/api/2.1/unity-catalog"


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub("Everyone's secret answer.")
    yield server
    server.shutdown()
    server.server_close()


def _sql(client: httpx.Client, statement: str) -> dict[str, Any]:
    response = client.post(
        "/api/2.0/sql/statements", json={"statement": statement, "wait_timeout": "30s"}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _endpoint(name: str, stub: StubServer, **extra: Any) -> dict[str, Any]:
    return {"name": name, "config": {"served_entities": [external_entity(stub)]}, **extra}


def test_a_table_created_first_under_the_predictable_name_is_not_adopted(
    server: RunningServer, stub: StubServer
) -> None:
    _, mallory = create_user(server, "mallory@example.com")
    with server.client(mallory) as client:
        made = _sql(
            client,
            "CREATE TABLE main.default.helpdesk_payload "
            "(request_id STRING, request STRING, response STRING)",
        )
        assert made["status"]["state"] == "SUCCEEDED", made
    with server.admin() as admin:
        refused = admin.post(EP, json=_endpoint("helpdesk", stub))
        assert refused.status_code == 409, refused.text
        assert "helpdesk_payload" in refused.json()["message"]
        assert admin.get(f"{EP}/helpdesk").status_code == 404  # nothing half-created
        # Choosing another table works, and the prompts go there.
        gateway = {
            "inference_table_config": {
                "enabled": True,
                "catalog_name": "main",
                "schema_name": "default",
                "table_name_prefix": "helpdesk_private",
            }
        }
        made_ep = admin.post(EP, json=_endpoint("helpdesk", stub, ai_gateway=gateway))
        assert made_ep.status_code == 200, made_ep.text
    client = openai.OpenAI(base_url=f"{server.url}/serving-endpoints", api_key=server.admin_token)
    client.chat.completions.create(
        model="helpdesk", messages=[{"role": "user", "content": "the admin's private prompt"}]
    )
    server.platform.writer.flush()
    with server.client(mallory) as client:
        rows = _sql(client, "SELECT count(*) FROM main.default.helpdesk_payload")
        assert rows["result"]["data_array"] == [["0"]]
        denied = _sql(client, "SELECT request FROM main.default.helpdesk_private_payload")
        assert denied["status"]["state"] == "FAILED"
        assert denied["status"]["error"]["bastion_error_code"] == "PERMISSION_DENIED"


def test_payload_table_exists_with_the_endpoint_and_belongs_to_its_owner(
    server: RunningServer, stub: StubServer
) -> None:
    _, alice = create_user(server, "alice@example.com")
    _, mallory = create_user(server, "mallory@example.com")
    with server.client(alice) as client:
        assert client.post(EP, json=_endpoint("alices-bot", stub)).status_code == 200
        table = client.get(f"{UC}/tables/main.default.alices_bot_payload")
        assert table.status_code == 200, table.text
        assert table.json()["owner"] == "alice@example.com"
    with server.client(mallory) as client:  # the name is taken before any request was served
        taken = _sql(client, "CREATE TABLE main.default.alices_bot_payload (request STRING)")
        assert taken["status"]["state"] == "FAILED"
        assert client.get(f"{UC}/tables/main.default.alices_bot_payload").status_code == 403


def test_one_endpoint_cannot_log_into_another_endpoints_table(
    server: RunningServer, stub: StubServer
) -> None:
    _, alice = create_user(server, "alice@example.com")
    _, mallory = create_user(server, "mallory@example.com")
    with server.client(alice) as client:
        assert client.post(EP, json=_endpoint("support", stub)).status_code == 200
    steal = {
        "inference_table_config": {
            "enabled": True,
            "catalog_name": "main",
            "schema_name": "default",
            "table_name_prefix": "support",
        }
    }
    with server.client(mallory) as client:
        created = client.post(EP, json=_endpoint("copycat", stub, ai_gateway=steal))
        assert created.status_code == 409, created.text
        assert client.post(EP, json=_endpoint("copycat", stub)).status_code == 200
        moved = client.put(f"{EP}/copycat/ai-gateway", json=steal)
        assert moved.status_code == 409, moved.text
    # The legacy auto_capture_config path is held to the same rule.
    capture = {
        "served_entities": [external_entity(stub)],
        "auto_capture_config": {
            "enabled": True,
            "catalog_name": "main",
            "schema_name": "default",
            "table_name_prefix": "support",
        },
    }
    with server.client(mallory) as client:
        assert client.put(f"{EP}/copycat/config", json=capture).status_code == 409


def test_a_lookalike_user_table_never_joins_red_team_results(
    server: RunningServer, stub: StubServer
) -> None:
    _, mallory = create_user(server, "mallory@example.com")
    columns = (
        "request_id STRING, client_request_id STRING, request_time TIMESTAMP, status_code INT, "
        "total_duration_ms BIGINT, model_name STRING, model_version STRING, "
        "served_entity_id STRING, requester STRING, scan_type STRING, scan_id STRING, "
        "input_tokens BIGINT, output_tokens BIGINT, request STRING, response STRING"
    )
    with server.client(mallory) as client:
        assert (
            _sql(client, f"CREATE TABLE main.default.forged_payload ({columns})")["status"]["state"]
            == "SUCCEEDED"
        )
    from bastion.redteam.store import payload_tables

    assert "main.default.forged_payload" not in payload_tables(server.platform)
