"""Hole 9: names Bastion derives are SQL identifiers, and SQL it generates quotes names, so a
``-`` in an endpoint name or table prefix never breaks ``system.redteam.results_joined``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from bastion.redteam.store import ensure_results_view
from conftest import RunningServer
from upstream_stub import StubServer, external_entity, start_stub

EP = "/api/2.0/serving-endpoints"


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub("ok")
    yield server
    server.shutdown()
    server.server_close()


def _sql(client: httpx.Client, statement: str) -> dict[str, Any]:
    response = client.post(
        "/api/2.0/sql/statements", json={"statement": statement, "wait_timeout": "30s"}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_hyphenated_names_keep_the_joined_view_working(
    server: RunningServer, stub: StubServer
) -> None:
    enabled = {"enabled": True, "catalog_name": "main", "schema_name": "default"}
    with server.admin() as admin:
        for name, gateway in (
            ("my-bot", {"inference_table_config": enabled}),
            ("plain-bot", None),
            ("odd-bot", {"inference_table_config": {**enabled, "table_name_prefix": "odd-name"}}),
        ):
            body: dict[str, Any] = {
                "name": name,
                "config": {"served_entities": [external_entity(stub)]},
            }
            if gateway:
                body["ai_gateway"] = gateway
            created = admin.post(EP, json=body)
            assert created.status_code == 200, created.text
        prefix = admin.get(f"{EP}/my-bot").json()["ai_gateway"]["inference_table_config"]
        assert prefix["table_name_prefix"] == "my_bot"
    client = openai.OpenAI(base_url=f"{server.url}/serving-endpoints", api_key=server.admin_token)
    for name in ("my-bot", "plain-bot", "odd-bot"):
        client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Request-Name": name},
        )
    server.platform.writer.flush()
    assert ensure_results_view(server.platform)
    with server.admin() as admin:
        for table in ("my_bot_payload", "plain_bot_payload", "`odd-name_payload`"):
            counted = _sql(admin, f"SELECT count(*) FROM main.default.{table}")
            assert counted["result"]["data_array"] == [["1"]], counted
        joined = _sql(admin, "SELECT count(*) FROM system.redteam.results_joined")
        assert joined["status"]["state"] == "SUCCEEDED", joined
