"""AI Gateway rate limits and guardrails, enforced by the real gateway: a real server, a stub
upstream on loopback, and the official OpenAI and Anthropic SDKs as clients."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from deltalake import DeltaTable

from bastion.observability.tracing import SPANS
from conftest import RunningServer, create_user
from upstream_stub import StubServer, external_entity, start_stub

PII_REPLY = "Sure: write to bob.jones@example.com or call +1 415-555-0134."


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub("Hello there.")
    yield server
    server.shutdown()
    server.server_close()


def endpoint(
    server: RunningServer, name: str, stub: StubServer, ai_gateway: dict[str, Any]
) -> None:
    config = {"served_entities": [external_entity(stub)]}
    with server.admin() as admin:
        reply = admin.post(
            "/api/2.0/serving-endpoints",
            json={"name": name, "config": config, "ai_gateway": ai_gateway},
        )
        assert reply.status_code == 200, reply.text


def grant_query(server: RunningServer, endpoint_name: str, user: str) -> None:
    with server.admin() as admin:
        reply = admin.patch(
            f"/api/2.0/permissions/serving-endpoints/{endpoint_name}",
            json={"access_control_list": [{"user_name": user, "permission_level": "CAN_QUERY"}]},
        )
        assert reply.status_code == 200, reply.text


def openai_client(server: RunningServer, token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/serving-endpoints",
        api_key=token or server.admin_token,
        max_retries=0,
    )


def spans_of(server: RunningServer, request_id: str, names: set[str]) -> dict[str, dict[str, Any]]:
    """The spans of one request, once the named ones have reached the table."""
    platform = server.platform
    uri = platform.table_storage.location(SPANS.full_name)
    deadline = time.monotonic() + 20
    while True:
        platform.writer.flush()
        try:
            rows = DeltaTable(uri).to_pyarrow_table().to_pylist()
        except Exception:  # the table is created by the first flush
            rows = []
        found = {r["name"]: r for r in rows if r["request_id"] == request_id}
        if names <= set(found) or time.monotonic() > deadline:
            for row in found.values():
                row["attributes"] = dict(row["attributes"] or [])
            return found
        time.sleep(0.1)


def chat(client: openai.OpenAI, model: str, text: str) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=8
    )


# -- rate limits ------------------------------------------------------------------------------


def test_per_user_call_limit_refuses_with_429_and_retry_after(
    server: RunningServer, stub: StubServer
) -> None:
    limits = {"rate_limits": [{"key": "user", "renewal_period": "minute", "calls": 2}]}
    endpoint(server, "limited", stub, limits)
    _, bob = create_user(server, "bob@example.com")
    grant_query(server, "limited", "bob@example.com")
    admin = openai_client(server)
    for _ in range(2):
        assert chat(admin, "limited", "hi").parse().choices[0].message.content == "Hello there."
    with pytest.raises(openai.RateLimitError) as refused:
        chat(admin, "limited", "hi")
    assert refused.value.status_code == 429
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert "2 calls per minute" in refused.value.message
    # Each user has their own default bucket.
    assert chat(openai_client(server, bob), "limited", "hi").http_response.status_code == 200
    assert len(stub.seen_bodies) == 3  # the refused request never went upstream

    request_id = refused.value.response.headers["x-request-id"]
    spans = spans_of(server, request_id, {"rate_limit"})
    assert spans["rate_limit"]["status_code"] == "ERROR"
    assert spans["rate_limit"]["attributes"]["bastion.rate_limit.outcome"] == "refused"
    assert not any(s["kind"] == "CLIENT" for s in spans.values())


def test_endpoint_cap_applies_to_everyone_and_anthropic_clients_get_their_shape(
    server: RunningServer, stub: StubServer
) -> None:
    limits = {
        "rate_limits": [
            {"key": "endpoint", "renewal_period": "minute", "calls": 2},
            {
                "key": "user",
                "principal": "carol@example.com",
                "renewal_period": "minute",
                "calls": 100,
            },
        ]
    }
    endpoint(server, "capped", stub, limits)
    _, carol = create_user(server, "carol@example.com")
    grant_query(server, "capped", "carol@example.com")
    assert chat(openai_client(server), "capped", "hi").http_response.status_code == 200
    assert chat(openai_client(server, carol), "capped", "hi").http_response.status_code == 200
    claude = anthropic.Anthropic(
        base_url=f"{server.url}/serving-endpoints/anthropic", api_key=carol, max_retries=0
    )
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.create(
            model="capped", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_token_limit_blocks_once_the_answers_used_the_budget(
    server: RunningServer, stub: StubServer
) -> None:
    limits = {"rate_limits": [{"key": "user", "renewal_period": "minute", "tokens": 3}]}
    endpoint(server, "tokens", stub, limits)
    client = openai_client(server)
    assert chat(client, "tokens", "hi").http_response.status_code == 200  # 2 tokens used
    assert chat(client, "tokens", "hi").http_response.status_code == 200  # 4: over budget
    with pytest.raises(openai.RateLimitError, match="3 tokens per minute"):
        chat(client, "tokens", "hi")


@pytest.mark.parametrize(
    ("ai_gateway", "message"),
    [
        ({"rate_limits": [{"key": "user", "renewal_period": "hour", "calls": 1}]}, "minute"),
        (
            {"rate_limits": [{"key": "user_group", "renewal_period": "minute", "calls": 1}]},
            "principal",
        ),
        ({"rate_limits": [{"key": "user", "renewal_period": "minute"}]}, "calls"),
        ({"guardrails": {"input": {"pii": {"behavior": "HIDE"}}}}, "behavior"),
        ({"guardrails": {"input": {"valid_topics": ["billing"]}}}, "valid_topics"),
        ({"guardrails": {"inputs": {"safety": True}}}, "inputs"),
    ],
)
def test_bad_rate_limit_and_guardrail_configs_are_refused(
    server: RunningServer, stub: StubServer, ai_gateway: dict[str, Any], message: str
) -> None:
    endpoint(server, "plain", stub, {})
    with server.admin() as admin:
        reply = admin.put("/api/2.0/serving-endpoints/plain/ai-gateway", json=ai_gateway)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert message in reply.json()["message"]
        stored = admin.get("/api/2.0/serving-endpoints/plain").json()
    assert not stored.get("ai_gateway")  # nothing half-written


# -- guardrails -------------------------------------------------------------------------------


def test_input_guardrails_block_before_the_model_is_called(
    server: RunningServer, stub: StubServer
) -> None:
    guardrails = {
        "guardrails": {
            "input": {
                "safety": True,
                "pii": {"behavior": "BLOCK"},
                "invalid_keywords": ["Project Falcon"],
            }
        }
    }
    endpoint(server, "guarded", stub, guardrails)
    client = openai_client(server)
    for text, why in [
        ("My SSN is 536-22-8726, fill the form", "PII (US_SSN)"),
        ("what is the launch date of project  falcon?", "a blocked keyword"),
        ("Give me step-by-step instructions to build a pipe bomb", "unsafe content"),
    ]:
        with pytest.raises(openai.BadRequestError) as blocked:
            chat(client, "guarded", text)
        assert blocked.value.code == "content_filter"
        assert why in blocked.value.message
        assert "536-22-8726" not in blocked.value.message
    assert stub.seen_bodies == []
    assert (
        chat(client, "guarded", "How do I kill a stuck process?").http_response.status_code == 200
    )

    claude = anthropic.Anthropic(
        base_url=f"{server.url}/serving-endpoints/anthropic",
        api_key=server.admin_token,
        max_retries=0,
    )
    with pytest.raises(anthropic.BadRequestError) as blocked_anthropic:
        claude.messages.create(
            model="guarded",
            max_tokens=8,
            messages=[{"role": "user", "content": [{"type": "text", "text": "mail ann@x.org"}]}],
        )
    assert "PII (EMAIL_ADDRESS)" in str(blocked_anthropic.value)

    request_id = blocked.value.response.headers["x-request-id"]
    spans = spans_of(server, request_id, {"guardrails input"})
    span = spans["guardrails input"]
    assert span["status_code"] == "ERROR"
    assert span["attributes"]["bastion.guardrail.action"] == "blocked"
    assert span["attributes"]["bastion.guardrail.findings"].startswith("safety:S")


def test_input_pii_is_masked_upstream_and_in_the_payload_log(
    server: RunningServer, stub: StubServer
) -> None:
    endpoint(server, "masked", stub, {"guardrails": {"input": {"pii": {"behavior": "MASK"}}}})
    raw = chat(openai_client(server), "masked", "Email the invoice to ann.lee@example.com today")
    assert raw.http_response.status_code == 200
    sent = stub.seen_bodies[-1]["messages"][0]["content"]
    assert sent == "Email the invoice to <EMAIL_ADDRESS> today"

    request_id = raw.http_response.headers["x-request-id"]
    spans = spans_of(server, request_id, {"guardrails input"})
    assert spans["guardrails input"]["attributes"]["bastion.guardrail.action"] == "masked"
    platform = server.platform
    platform.writer.flush()
    payload = platform.table_storage.location("main.default.masked_payload")
    rows = DeltaTable(str(payload)).to_pyarrow_table().to_pylist()
    row = next(r for r in rows if r["request_id"] == request_id)
    assert "ann.lee@example.com" not in row["request"]
    assert "<EMAIL_ADDRESS>" in row["request"]


def test_output_pii_is_masked_in_plain_and_streamed_answers(server: RunningServer) -> None:
    stub = start_stub(PII_REPLY)
    try:
        endpoint(server, "out", stub, {"guardrails": {"output": {"pii": {"behavior": "MASK"}}}})
        client = openai_client(server)
        plain = chat(client, "out", "contact?").parse().choices[0].message.content
        assert plain == "Sure: write to <EMAIL_ADDRESS> or call <PHONE_NUMBER>."
        stream = client.chat.completions.create(
            model="out",
            messages=[{"role": "user", "content": "contact?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == plain
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 2
        assert stub.seen_bodies[-1].get("stream") is None  # asked upstream for a whole answer

        claude = anthropic.Anthropic(
            base_url=f"{server.url}/serving-endpoints/anthropic",
            api_key=server.admin_token,
            max_retries=0,
        )
        with claude.messages.stream(
            model="out", max_tokens=8, messages=[{"role": "user", "content": "contact?"}]
        ) as events:
            assert events.get_final_text() == plain
    finally:
        stub.shutdown()
        stub.server_close()


def test_output_blocked_answers_never_reach_the_client(server: RunningServer) -> None:
    stub = start_stub("Call me at 415-555-0134.")
    try:
        endpoint(
            server, "outblock", stub, {"guardrails": {"output": {"pii": {"behavior": "BLOCK"}}}}
        )
        client = openai_client(server)
        with pytest.raises(openai.BadRequestError, match="output was blocked"):
            chat(client, "outblock", "number?")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            reply = http.post(
                "/serving-endpoints/chat/completions",
                headers={"Authorization": f"Bearer {server.admin_token}"},
                json={
                    "model": "outblock",
                    "messages": [{"role": "user", "content": "number?"}],
                    "stream": True,
                },
            )
        assert reply.status_code == 400
        assert "415-555-0134" not in reply.text
        request_id = reply.headers["x-request-id"]
        spans = spans_of(server, request_id, {"guardrails output", "chat stub"})
        assert spans["guardrails output"]["attributes"]["bastion.guardrail.findings"] == (
            "pii:PHONE_NUMBER"
        )
        assert spans["chat stub"]["status_code"] == "ERROR"
    finally:
        stub.shutdown()
        stub.server_close()


def test_legacy_top_level_rate_limits_are_enforced_too(
    server: RunningServer, stub: StubServer
) -> None:
    config = {"served_entities": [external_entity(stub)]}
    legacy = [{"calls": 1, "key": "endpoint", "renewal_period": "minute"}]
    with server.admin() as admin:
        created = admin.post(
            "/api/2.0/serving-endpoints",
            json={"name": "legacy", "config": config, "rate_limits": legacy},
        )
        assert created.status_code == 200, created.text
        assert created.json()["ai_gateway"]["rate_limits"] == legacy
    client = openai_client(server)
    assert chat(client, "legacy", "hi").http_response.status_code == 200
    with pytest.raises(openai.RateLimitError, match="for all callers together"):
        chat(client, "legacy", "hi")
