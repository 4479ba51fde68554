"""The official OpenAI and Anthropic SDKs against a running server and the real SmolLM2 model."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from bastion.bootstrap import initialize
from bastion.platform import Platform
from bastion.serving.control.bootstrap import bootstrap_default_model
from conftest import RunningServer, ServerThread, create_user, make_settings
from upstream_stub import external_entity, start_stub  # tests/serving/upstream_stub.py

PROMPT = "Name one colour of the rainbow."


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("smol")
    platform = Platform(make_settings(home / "home", f"sqlite:///{home / 'm.db'}"))
    initialize(platform)
    bootstrap_default_model(platform)
    with ServerThread(platform) as url:
        server = RunningServer(url, platform)
        _wait_ready(server, "smollm2")
        yield server
    platform.close()


def _wait_ready(server: RunningServer, endpoint: str) -> None:
    deadline = time.monotonic() + 120
    with server.admin() as admin:
        while time.monotonic() < deadline:
            state = admin.get(f"/api/2.0/serving-endpoints/{endpoint}").json().get("state", {})
            if state.get("ready") == "READY":
                return
            time.sleep(0.5)
    raise AssertionError(f"endpoint {endpoint} did not become ready")


@pytest.fixture(scope="module")
def user_token(smol: RunningServer) -> str:
    return create_user(smol, "dev@example.com")[1]


def test_openai_chat_completions_plain_and_streaming(smol: RunningServer, user_token: str) -> None:
    client = openai.OpenAI(base_url=f"{smol.url}/serving-endpoints", api_key=user_token)
    reply = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": PROMPT}], max_tokens=24
    )
    assert reply.choices[0].message.content and reply.choices[0].message.content.strip()
    assert reply.model == "smollm2"
    assert reply.usage is not None and reply.usage.completion_tokens > 0

    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 1 and "".join(pieces).strip()


def test_openai_responses(smol: RunningServer, user_token: str) -> None:
    client = openai.OpenAI(base_url=f"{smol.url}/serving-endpoints", api_key=user_token)
    response = client.responses.create(
        model="smollm2", input=[{"role": "user", "content": PROMPT}], max_output_tokens=256
    )
    assert response.output_text.strip()
    assert response.status == "completed"


def test_anthropic_messages_plain_and_streaming(smol: RunningServer, user_token: str) -> None:
    client = anthropic.Anthropic(
        base_url=f"{smol.url}/serving-endpoints/anthropic", api_key=user_token
    )
    message = client.messages.create(
        model="smollm2", max_tokens=24, messages=[{"role": "user", "content": PROMPT}]
    )
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")

    with client.messages.stream(
        model="smollm2", max_tokens=24, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.usage.output_tokens > 0

    # Claude Code sends the token as a bearer token (ANTHROPIC_AUTH_TOKEN).
    bearer = anthropic.Anthropic(
        base_url=f"{smol.url}/serving-endpoints/anthropic", auth_token=user_token
    )
    assert bearer.messages.create(
        model="smollm2", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
    ).content


def test_models_lists_what_the_caller_can_query(smol: RunningServer, user_token: str) -> None:
    client = openai.OpenAI(base_url=f"{smol.url}/serving-endpoints", api_key=user_token)
    assert "smollm2" in [m.id for m in client.models.list()]


def test_no_can_query_is_403_in_each_api_shape(smol: RunningServer, user_token: str) -> None:
    stub = start_stub("private answer")
    try:
        with smol.admin() as admin:
            created = admin.post(
                "/api/2.0/serving-endpoints",
                json={
                    "name": "private",
                    "config": {"served_entities": [external_entity(stub, "p")]},
                },
            )
            assert created.status_code == 200, created.text
        oa = openai.OpenAI(base_url=f"{smol.url}/serving-endpoints", api_key=user_token)
        with pytest.raises(openai.PermissionDeniedError) as denied:
            oa.chat.completions.create(model="private", messages=[{"role": "user", "content": "x"}])
        assert "CAN QUERY" in str(denied.value) or "CAN_QUERY" in str(denied.value)
        an = anthropic.Anthropic(
            base_url=f"{smol.url}/serving-endpoints/anthropic", api_key=user_token
        )
        with pytest.raises(anthropic.PermissionDeniedError) as denied_a:
            an.messages.create(
                model="private", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
        assert denied_a.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
        native = httpx.post(
            f"{smol.url}/serving-endpoints/private/invocations",
            json={"messages": [{"role": "user", "content": "x"}]},
            headers={"Authorization": f"Bearer {user_token}"},
        )
        assert native.status_code == 403 and native.json()["error_code"] == "PERMISSION_DENIED"
        assert "private" not in [m.id for m in oa.models.list()]
    finally:
        stub.shutdown()
        stub.server_close()


def test_bad_requests_are_4xx_never_500(smol: RunningServer, user_token: str) -> None:
    oa = openai.OpenAI(base_url=f"{smol.url}/serving-endpoints", api_key=user_token, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        oa.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        oa.chat.completions.create(model="smollm2", messages=[{"role": "wizard", "content": "x"}])  # type: ignore[misc,list-item]
    with pytest.raises(openai.BadRequestError):
        oa.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "x"}], max_tokens=0
        )
    with pytest.raises(openai.BadRequestError):
        oa.chat.completions.create(model="smollm2", messages=[])
    an = anthropic.Anthropic(
        base_url=f"{smol.url}/serving-endpoints/anthropic", api_key=user_token, max_retries=0
    )
    with pytest.raises(anthropic.BadRequestError):
        an.messages.create(
            model="smollm2", max_tokens=-1, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            base_url=f"{smol.url}/serving-endpoints/anthropic", api_key="bstp_" + "0" * 40
        ).messages.create(
            model="smollm2", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    raw = httpx.post(
        f"{smol.url}/serving-endpoints/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {user_token}"},
    )
    assert raw.status_code == 400 and "error" in raw.json()


def test_prompts_past_the_workers_context_are_refused_before_any_call(
    smol: RunningServer, user_token: str
) -> None:
    """The embedded model gets a 2,048-token context: a longer prompt is a 400 in each API's
    shape, streamed or not (llama.cpp itself would answer a stream with nothing at all)."""
    long = "Tell me about the rainbow. " * 400  # ~2,400 tokens to SmolLM2's tokenizer
    oai = openai.OpenAI(base_url=f"{smol.url}/serving-endpoints", api_key=user_token, max_retries=0)
    claude = anthropic.Anthropic(
        base_url=f"{smol.url}/serving-endpoints/anthropic", auth_token=user_token, max_retries=0
    )
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as chat:
            oai.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": long}], stream=stream
            )
        assert chat.value.code == "context_length_exceeded"
        assert "2048-token context window" in chat.value.message
        with pytest.raises(openai.BadRequestError):
            oai.responses.create(model="smollm2", input=long, stream=stream)
        with pytest.raises(anthropic.BadRequestError) as messages:
            claude.messages.create(
                model="smollm2",
                max_tokens=8,
                messages=[{"role": "user", "content": long}],
                stream=stream,
            )
        assert messages.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    # count_tokens asks the worker's own tokenizer.
    short = claude.messages.count_tokens(
        model="smollm2", messages=[{"role": "user", "content": "Tell me about the rainbow."}]
    )
    counted = claude.messages.count_tokens(
        model="smollm2", messages=[{"role": "user", "content": long}]
    )
    assert 0 < short.input_tokens < 20 < 2048 < counted.input_tokens < 4000
