"""Hole 1: a secret reference is checked against whoever puts it into a serving path — a
model version's creator, an endpoint config's writer, an alias mover — and again whenever
what is served changes, so nobody can make the gateway send a secret they may not read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from conftest import RunningServer, create_user
from upstream_stub import StubServer, start_stub

UC = "/api/2.1/unity-catalog"
EP = "/api/2.0/serving-endpoints"
SECRET = "sk-the-platform-teams-key"


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub("ok")
    yield server
    server.shutdown()
    server.server_close()


def _external(stub: StubServer, key: str) -> dict[str, Any]:
    return {
        "provider": "openai",
        "name": "stub",
        "openai_config": {"openai_api_base": stub.base_url, "openai_api_key": key},
    }


def _put_secret(admin: httpx.Client, scope: str) -> None:
    assert admin.post("/api/2.0/secrets/scopes/create", json={"scope": scope}).is_success
    put = {"scope": scope, "key": "key", "string_value": SECRET}
    assert admin.post("/api/2.0/secrets/put", json=put).is_success


def _model(client: httpx.Client, name: str) -> None:
    body = {"catalog_name": "main", "schema_name": "default", "name": name}
    assert client.post(f"{UC}/models", json=body).status_code == 200


def _version(client: httpx.Client, model: str, external: dict[str, Any]) -> httpx.Response:
    return client.post(
        f"{UC}/models/versions",
        json={
            "catalog_name": "main",
            "schema_name": "default",
            "model_name": model,
            "external_model": external,
        },
    )


def test_a_model_version_cannot_carry_a_secret_its_creator_cannot_read(
    server: RunningServer, stub: StubServer
) -> None:
    _, mallory = create_user(server, "mallory@example.com")
    with server.admin() as admin:
        _put_secret(admin, "llm")
    with server.client(mallory) as client:
        _model(client, "exfil")
        refused = _version(client, "exfil", _external(stub, "{{secrets/llm/key}}"))
        assert refused.status_code == 403, refused.text
        assert "READ" in refused.json()["message"]
        versions = client.get(f"{UC}/models/main.default.exfil/versions").json()
        assert versions["model_versions"] == []
    assert SECRET not in str(stub.seen_authorization)


def test_serving_or_aliasing_a_version_with_a_secret_needs_read_too(
    server: RunningServer, stub: StubServer
) -> None:
    _, mallory = create_user(server, "mallory@example.com")
    with server.admin() as admin:
        _put_secret(admin, "llm")
        _model(admin, "gpt")
        assert _version(admin, "gpt", _external(stub, "")).status_code == 200  # v1: no key
        assert _version(admin, "gpt", _external(stub, "{{secrets/llm/key}}")).status_code == 200
        grant = {"changes": [{"principal": "mallory@example.com", "add": ["MANAGE", "EXECUTE"]}]}
        assert admin.patch(f"{UC}/permissions/registered_model/main.default.gpt", json=grant)
        assert admin.put(
            f"{UC}/models/main.default.gpt/aliases/champion", json={"version_num": 1}
        ).is_success
    with server.client(mallory) as client:
        moved = client.put(
            f"{UC}/models/main.default.gpt/aliases/champion", json={"version_num": 2}
        )
        assert moved.status_code == 403, moved.text
        entity = {"entity_name": "main.default.gpt", "entity_version": "2"}
        served = client.post(EP, json={"name": "mine", "config": {"served_entities": [entity]}})
        assert served.status_code == 403, served.text
        # The alias still points at v1, which carries no key: that one she may serve.
        ok = {"entity_name": "main.default.gpt", "entity_version": "@champion"}
        assert client.post(
            EP, json={"name": "mine", "config": {"served_entities": [ok]}}
        ).is_success


def test_use_is_checked_again_when_read_is_revoked(server: RunningServer, stub: StubServer) -> None:
    _, alice = create_user(server, "alice@example.com")
    with server.admin() as admin:
        _put_secret(admin, "team")
        acl = {"scope": "team", "principal": "alice@example.com", "permission": "READ"}
        assert admin.post("/api/2.0/secrets/acls/put", json=acl).is_success
    with server.client(alice) as client:
        _model(client, "teambot")
        assert _version(client, "teambot", _external(stub, "{{secrets/team/key}}")).is_success
        entity = {"entity_name": "main.default.teambot", "entity_version": "1"}
        made = client.post(EP, json={"name": "teambot", "config": {"served_entities": [entity]}})
        assert made.status_code == 200, made.text
    chat = openai.OpenAI(base_url=f"{server.url}/serving-endpoints", api_key=alice, max_retries=0)
    chat.chat.completions.create(model="teambot", messages=[{"role": "user", "content": "hi"}])
    assert stub.seen_authorization[-1] == f"Bearer {SECRET}"
    seen = len(stub.seen_authorization)

    with server.admin() as admin:
        revoke = {"scope": "team", "principal": "alice@example.com"}
        assert admin.post("/api/2.0/secrets/acls/delete", json=revoke).is_success
    with pytest.raises(openai.APIStatusError) as failed:
        chat.chat.completions.create(model="teambot", messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 503
    assert len(stub.seen_authorization) == seen  # the key was not sent again
    with server.client(alice) as client:
        state = client.get(f"{EP}/teambot").json()
    message = state["config"]["served_entities"][0]["state"]["deployment_state_message"]
    assert "READ" in message
