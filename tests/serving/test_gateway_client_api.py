"""What coding agents need of the gateway besides completions, with the official SDKs: the
Anthropic base's HEAD probe, ``count_tokens`` and ``models``; and honest failures — a prompt
past the model's context is an error in each API's own shape, streamed or not, logged as one."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from conftest import RunningServer, create_user
from upstream_stub import StubServer, external_entity, external_model, start_stub

LONG = "word " * 4000  # ~5,000 tokens by the stub's count, past its 1,000-token context


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    server = start_stub("stub reply")
    server.context_tokens = 1000
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def deployed(shared_server: RunningServer, stub: StubServer) -> tuple[RunningServer, str]:
    """Endpoints ``ctx`` (OpenAI-compatible upstream) and ``ctx-anthropic`` (Anthropic
    upstream), both answered by the stub; a user who may query only ``ctx``."""
    with shared_server.admin() as admin:
        for name, entity in (
            ("ctx", external_entity(stub)),
            (
                "ctx-anthropic",
                {"name": "c", "external_model": external_model(stub, anthropic=True)},
            ),
        ):
            reply = admin.post(
                "/api/2.0/serving-endpoints",
                json={"name": name, "config": {"served_entities": [entity]}},
            )
            assert reply.status_code == 200, reply.text
        _, token = create_user(shared_server, "coder@example.com")
        acl = {
            "access_control_list": [
                {"user_name": "coder@example.com", "permission_level": "CAN_QUERY"}
            ]
        }
        assert admin.patch("/api/2.0/permissions/serving-endpoints/ctx", json=acl).is_success
    return shared_server, token


def _anthropic(server: RunningServer, token: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{server.url}/serving-endpoints/anthropic", auth_token=token, max_retries=0
    )


def test_head_on_the_anthropic_base_answers(deployed: tuple[RunningServer, str]) -> None:
    server, _ = deployed
    for path in ("/serving-endpoints/anthropic", "/serving-endpoints/anthropic/v1/"):
        assert httpx.head(server.url + path).status_code == 200


def test_count_tokens_and_models(deployed: tuple[RunningServer, str], stub: StubServer) -> None:
    server, token = deployed
    client = _anthropic(server, token)
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hello there"}]
    counted = client.messages.count_tokens(model="ctx", messages=messages, system="Be brief.")
    assert counted.input_tokens > 0
    # An Anthropic upstream counts for itself: its count is passed on as it is.
    admin = _anthropic(server, server.admin_token)
    exact = admin.messages.count_tokens(model="ctx-anthropic", messages=messages)
    assert stub.seen_paths[-1] == "/v1/messages/count_tokens"
    sent = stub.seen_bodies[-1]
    assert "max_tokens" not in sent and "stream" not in sent
    expected = len(json.dumps(sent["messages"]) + json.dumps(sent.get("system", ""))) // 4
    assert exact.input_tokens == expected
    models = client.models.list()
    assert [m.id for m in models.data] == ["ctx"]  # only what this user may query
    assert client.models.retrieve("ctx").id == "ctx"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("ctx-anthropic")
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        client.messages.count_tokens(model="ctx-anthropic", messages=messages)
    assert denied.value.body["type"] == "error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError):
        _anthropic(server, "bstp_" + "0" * 40).models.list()


@pytest.mark.parametrize("stream", [False, True])
def test_over_context_prompts_fail_in_each_apis_shape(
    deployed: tuple[RunningServer, str], stream: bool
) -> None:
    """The stub answers as llama.cpp does (a 400, or an empty 200 stream); Bastion turns both
    into an error the client's SDK raises, and logs it as an error."""
    server, token = deployed
    oai = openai.OpenAI(base_url=f"{server.url}/serving-endpoints", api_key=token, max_retries=0)
    with pytest.raises(openai.APIStatusError) as chat:
        result = oai.chat.completions.create(
            model="ctx", messages=[{"role": "user", "content": LONG}], stream=stream
        )
        list(result) if stream else None  # type: ignore[call-overload]
    assert chat.value.status_code in (400, 502) and chat.value.body
    with pytest.raises(openai.APIStatusError) as responses:
        result = oai.responses.create(model="ctx", input=LONG, stream=stream)
        list(result) if stream else None  # type: ignore[call-overload]
    assert responses.value.status_code in (400, 502)
    with pytest.raises(anthropic.APIStatusError) as messages:
        client = _anthropic(server, token)
        if stream:
            with client.messages.stream(
                model="ctx", max_tokens=16, messages=[{"role": "user", "content": LONG}]
            ) as events:
                list(events)
        else:
            client.messages.create(
                model="ctx", max_tokens=16, messages=[{"role": "user", "content": LONG}]
            )
    assert messages.value.status_code in (400, 502)
    assert messages.value.body["type"] == "error"  # type: ignore[index]
    server.platform.writer.flush()
    with server.admin() as admin:
        rows = admin.post(
            "/api/2.0/sql/statements",
            json={
                "statement": "SELECT api, status_code, stream FROM main.default.ctx_payload "
                "WHERE stream = :stream AND status_code <> 200",
                "parameters": [{"name": "stream", "value": str(stream).lower(), "type": "BOOLEAN"}],
                "wait_timeout": "30s",
            },
        ).json()
    apis = {row[0] for row in rows["result"]["data_array"]}
    assert apis == {"chat/completions", "responses", "anthropic/v1/messages"}
