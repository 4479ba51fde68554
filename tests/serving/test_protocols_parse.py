"""Parsing and validating client request bodies, and rendering the errors each API expects."""

from __future__ import annotations

import doctest
from typing import Any

import anthropic.types as anthropic_types
import openai.types as openai_types
import orjson
import pytest

from bastion.errors import InvalidRequest, NotFound, RateLimited, Unavailable
from bastion.serving import protocols
from bastion.serving.protocols import (
    ClientApi,
    MalformedBody,
    RequestValidationError,
    anthropic_messages,
    anthropic_provider,
    errors,
    invocations,
    openai_chat,
    openai_responses,
    parse_anthropic_messages,
    parse_chat_completions,
    parse_invocations,
    parse_request,
    parse_responses,
    render_error,
    sse,
    streaming,
)

USER = [{"role": "user", "content": "hi"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "ep", "messages": USER, **extra}


def anthropic_body(**extra: Any) -> dict[str, Any]:
    return {"model": "ep", "max_tokens": 64, "messages": USER, **extra}


@pytest.mark.parametrize(
    "module",
    [
        errors,
        sse,
        streaming,
        openai_chat,
        openai_responses,
        anthropic_messages,
        anthropic_provider,
        invocations,
    ],
)
def test_docstring_examples_run(module: Any) -> None:
    result = doctest.testmod(module, raise_on_error=False)
    assert result.attempted > 0
    assert result.failed == 0


# ---------------------------------------------------------------- chat completions


def test_chat_request_round_trips_to_the_upstream_body() -> None:
    body = chat_body(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        max_tokens=50,
        temperature=0.2,
        stop="END",
        seed=7,
        stream=True,
        user="u-1",
        metadata={"a": "b"},
        n=1,
    )
    request = parse_chat_completions(orjson.dumps(body))
    upstream = request.to_openai(model="smollm2")
    assert upstream["model"] == "smollm2"
    assert upstream["messages"][0] == {"role": "system", "content": "Be brief."}
    assert upstream["messages"][1] == body["messages"][1]
    assert upstream["tools"] == [WEATHER_TOOL]
    assert (upstream["max_tokens"], upstream["temperature"], upstream["stop"]) == (50, 0.2, ["END"])
    assert upstream["seed"] == 7
    assert upstream["stream_options"] == {"include_usage": True}
    for dropped in ("user", "metadata", "n"):
        assert dropped not in upstream
    assert body["messages"][0]["role"] == "developer"  # the client's dict is left alone


def test_max_completion_tokens_is_the_canonical_limit() -> None:
    assert parse_chat_completions(chat_body(max_completion_tokens=9)).max_tokens == 9


@pytest.mark.parametrize(
    ("extra", "param", "fragment"),
    [
        ({"frobnicate": 1}, "frobnicate", "Unrecognized request argument supplied: frobnicate"),
        ({"max_tokens": 0}, "max_tokens", "at least 1"),
        ({"max_tokens": 5000}, "max_tokens", "at most 4096"),
        ({"max_tokens": "10"}, "max_tokens", "expected an integer"),
        ({"temperature": 3}, "temperature", "between 0 and 2"),
        ({"n": 2}, "n", "Only n=1"),
        ({"messages": []}, "messages", "empty array"),
        ({"messages": "hi"}, "messages", "expected an array"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "'wizard'"),
        ({"messages": [{"content": "x"}]}, "messages[0].role", "Missing required"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "Missing required"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]},
            "messages[0].content[0].type",
            "'video'",
        ),
        (
            {"messages": [{"role": "tool", "content": "42"}]},
            "messages[0].tool_call_id",
            "Missing required",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}]},
            "messages[0].tool_calls[0].function.name",
            "Missing required",
        ),
        ({"tools": [{"type": "code_interpreter"}]}, "tools[0].type", "only 'function'"),
        ({"tool_choice": "sometimes"}, "tool_choice", "'sometimes'"),
        (
            {
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "x"}},
            },
            "tool_choice.function.name",
            "no tool named 'x'",
        ),
        ({"functions": [{"name": "f"}]}, "functions", "send 'tools'"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ],
)
def test_chat_validation_errors(extra: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        parse_chat_completions(chat_body(**extra), max_tokens_cap=4096)
    assert caught.value.param == param
    assert fragment in caught.value.message
    status, body = render_error(ClientApi.CHAT_COMPLETIONS, caught.value)
    assert status == 400
    error = openai_types.ErrorObject.model_validate(orjson.loads(body)["error"])
    assert (error.type, error.param) == ("invalid_request_error", param)


def test_missing_model_and_malformed_bodies() -> None:
    with pytest.raises(RequestValidationError, match="Missing required parameter: 'model'"):
        parse_chat_completions({"messages": USER})
    with pytest.raises(MalformedBody, match="not valid JSON"):
        parse_chat_completions(b'{"model": "ep", "messages": [')
    with pytest.raises(MalformedBody, match="not a JSON array"):
        parse_chat_completions(b"[1, 2]")


# ---------------------------------------------------------------- responses


def test_responses_input_items_become_chat_messages() -> None:
    body = {
        "model": "ep",
        "instructions": "Use tools.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "18C"},
            {"type": "function_call_output", "call_id": "c2", "output": "noon"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "And this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 30,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        "store": False,
        "reasoning": {"effort": "low"},
    }
    request = parse_responses(body)
    roles = [m["role"] for m in request.messages]
    assert roles == ["system", "user", "assistant", "tool", "tool", "user"]
    calls = request.messages[2]["tool_calls"]
    assert [c["id"] for c in calls] == ["c1", "c2"]
    assert request.messages[3] == {"role": "tool", "tool_call_id": "c1", "content": "18C"}
    assert request.messages[5]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    upstream = request.to_openai()
    assert upstream["tools"][0]["function"]["name"] == "get_weather"
    assert upstream["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert upstream["max_tokens"] == 30
    assert upstream["response_format"]["json_schema"]["name"] == "w"
    assert "store" not in upstream and "reasoning" not in upstream


@pytest.mark.parametrize(
    ("extra", "param", "fragment"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "does not store"),
        ({"tools": [{"type": "mcp", "server_url": "u"}]}, "tools[0].type", "remote MCP"),
        ({"tools": [{"type": "custom", "name": "patch"}]}, "tools[0].type", "'custom' tools"),
        ({"tools": [{"type": "teleport"}]}, "tools[0].type", "only 'function'"),
        ({"tool_choice": {"type": "web_search"}}, "tool_choice.type", "cannot be forced"),
        ({"max_output_tokens": 0}, "max_output_tokens", "at least 1"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0]", "stores no items"),
        ({"input": [{"type": "computer_call"}]}, "input[0].type", "'computer_call'"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "'tool'"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
            "'input_file'",
        ),
        ({"input": 5}, "input", "expected a string or an array"),
        ({"bogus": True}, "bogus", "Unrecognized request argument"),
    ],
)
def test_responses_validation_errors(extra: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        parse_responses({"model": "ep", "input": "hi", **extra})
    assert caught.value.param == param
    assert fragment in caught.value.message


# ---------------------------------------------------------------- anthropic


def test_anthropic_blocks_become_chat_messages() -> None:
    body = anthropic_body(
        system=[{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Be kind."}],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "...", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"c": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["\n\nHuman:"],
        thinking={"type": "enabled", "budget_tokens": 1024},
        metadata={"user_id": "u"},
        top_k=5,
    )
    request = parse_anthropic_messages(body)
    assert request.messages[0] == {"role": "system", "content": "You are terse.\nBe kind."}
    assert request.messages[2]["content"] == "Checking."
    assert request.messages[2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"c":1}',
    }
    assert request.messages[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}
    assert request.messages[4]["content"][0]["image_url"]["url"] == "data:image/png;base64,AAAA"
    upstream = request.to_openai()
    assert upstream["tool_choice"] == "required"
    assert upstream["parallel_tool_calls"] is False
    assert upstream["stop"] == ["\n\nHuman:"]
    assert upstream["tools"][0]["function"]["parameters"] == {"type": "object"}
    assert not {"thinking", "metadata", "top_k"} & set(upstream)


def test_anthropic_mid_conversation_system_messages_stay_or_fold() -> None:
    """Claude Code sends a system message after the first user turn (beta
    mid-conversation-system): kept in place, folded first for upstreams that need it."""
    body = anthropic_body(
        system="Top.",
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "system",
                "content": [{"type": "text", "text": "Env.", "cache_control": {"type": "x"}}],
                "output_config": {"effort": "medium"},
            },
        ],
    )
    request = parse_anthropic_messages(body)
    assert [m["role"] for m in request.messages] == ["system", "user", "system"]
    assert request.to_openai()["messages"][2] == {"role": "system", "content": "Env."}
    folded = request.to_openai(fold_system=True)["messages"]
    assert folded == [
        {"role": "system", "content": "Top.\nEnv."},
        {"role": "user", "content": "hi"},
    ]
    # Toward an Anthropic upstream every system message joins the top-level system prompt.
    anthropic = anthropic_provider.to_anthropic_request(request, model="claude")
    assert anthropic["system"] == "Top.\nEnv."
    assert [m["role"] for m in anthropic["messages"]] == ["user"]


def test_anthropic_count_tokens_bodies_need_no_max_tokens() -> None:
    request = parse_anthropic_messages({"model": "ep", "messages": USER}, count_only=True)
    assert request.messages == USER
    with pytest.raises(RequestValidationError) as caught:
        parse_anthropic_messages({"model": "ep", "messages": USER, "stream": True}, count_only=True)
    assert "Extra inputs are not permitted" in caught.value.message


def test_responses_accepts_what_codex_sends_and_drops_hosted_tools() -> None:
    body = {
        "model": "ep",
        "input": [
            {
                "type": "message",
                "id": "msg_1",
                "role": "developer",
                "content": [{"type": "input_text", "text": "You are Codex."}],
            },
            {
                "type": "message",
                "id": "msg_2",
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}],
            },
        ],
        "stream": True,
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "k",
        "client_metadata": {"session_id": "s"},
        "tools": [
            {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
            {"type": "namespace", "name": "multi_agent_v1", "tools": []},
            {"type": "web_search", "external_web_access": False},
            {"type": "web_search"},
        ],
    }
    request = parse_responses(body)
    assert [t["function"]["name"] for t in request.tools or []] == ["exec_command"]
    assert request.notes == ["HOSTED_TOOL_DROPPED:namespace", "HOSTED_TOOL_DROPPED:web_search"]
    assert "client_metadata" not in request.to_openai()


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"model": "ep", "messages": USER}, "max_tokens", "Missing required"),
        (anthropic_body(max_tokens=0), "max_tokens", "at least 1"),
        (anthropic_body(max_tokens=10**9), "max_tokens", "more than this endpoint allows"),
        (
            anthropic_body(messages=[{"role": "developer", "content": "x"}]),
            "messages.0.role",
            "'user', 'assistant' or 'system'",
        ),
        (
            anthropic_body(messages=[{"role": "system", "content": [{"type": "image"}]}]),
            "messages.0.content.0",
            "system blocks must be text blocks",
        ),
        (
            anthropic_body(messages=[{"role": "user", "content": [{"type": "audio"}]}]),
            "messages.0.content.0.type",
            "unsupported content block type 'audio'",
        ),
        (anthropic_body(temperature=1.5), "temperature", "between 0 and 1"),
        (anthropic_body(frobnicate=1), "frobnicate", "Extra inputs are not permitted"),
        (
            anthropic_body(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
            "tools.0.type",
            "not supported",
        ),
        (anthropic_body(tools=[{"name": "t"}]), "tools.0.input_schema", "Missing required"),
    ],
)
def test_anthropic_validation_errors(body: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        parse_anthropic_messages(body)
    assert caught.value.param == param
    assert fragment in caught.value.message
    status, raw = render_error(ClientApi.ANTHROPIC_MESSAGES, caught.value)
    assert status == 400
    error = anthropic_types.ErrorResponse.model_validate(orjson.loads(raw))
    assert error.error.type == "invalid_request_error"
    assert fragment in error.error.message


# ---------------------------------------------------------------- invocations


def test_invocations_strips_governance_fields_and_exposes_them() -> None:
    body = {
        "messages": USER,
        "max_tokens": 20,
        "client_request_id": "req-7",
        "usage_context": {"project": "alpha"},
        "extra_params": {"top_k": 3, "messages": [], "max_tokens": 10**6},
    }
    request = parse_request(ClientApi.INVOCATIONS, orjson.dumps(body), endpoint="my-ep")
    assert (request.model, request.client_request_id) == ("my-ep", "req-7")
    assert request.usage_context == {"project": "alpha"}
    upstream = request.to_openai(model="smollm2")
    assert "client_request_id" not in upstream and "usage_context" not in upstream
    assert "extra_params" not in upstream and upstream["top_k"] == 3
    assert upstream["messages"] == USER and upstream["max_tokens"] == 20
    assert request.reply_format is ClientApi.CHAT_COMPLETIONS


def test_invocations_accepts_responses_agent_bodies() -> None:
    request = parse_invocations(
        {"input": [{"role": "user", "content": "hi"}], "custom_inputs": {"k": 1}}, endpoint="agent"
    )
    assert request.reply_format is ClientApi.RESPONSES
    assert request.messages == [{"role": "user", "content": "hi"}]


def test_invocations_errors_use_the_databricks_shape() -> None:
    with pytest.raises(RequestValidationError) as caught:
        parse_invocations({"dataframe_records": [{"x": 1}]}, endpoint="ep")
    status, raw = render_error(ClientApi.INVOCATIONS, caught.value)
    assert status == 400
    body = orjson.loads(raw)
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'messages'" in body["message"]
    with pytest.raises(RequestValidationError, match="usage_context"):
        parse_invocations({"messages": USER, "usage_context": "team-a"}, endpoint="ep")


# ---------------------------------------------------------------- error rendering


@pytest.mark.parametrize(
    ("error", "status", "openai_type", "anthropic_type"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error", "invalid_request_error"),
        (NotFound("Endpoint 'x' does not exist."), 404, "not_found_error", "not_found_error"),
        (RateLimited("slow down"), 429, "rate_limit_error", "rate_limit_error"),
        (Unavailable("busy"), 503, "server_error", "overloaded_error"),
    ],
)
def test_error_shapes(error: Any, status: int, openai_type: str, anthropic_type: str) -> None:
    code, raw = render_error(ClientApi.RESPONSES, error)
    assert code == status
    assert openai_types.ErrorObject.model_validate(orjson.loads(raw)["error"]).type == openai_type
    code, raw = render_error(ClientApi.ANTHROPIC_MESSAGES, error)
    parsed = anthropic_types.ErrorResponse.model_validate(orjson.loads(raw))
    assert (code, parsed.error.type) == (status, anthropic_type)
    code, raw = render_error(ClientApi.INVOCATIONS, error)
    assert orjson.loads(raw) == {"error_code": error.error_code, "message": error.message}


def test_public_api_is_exported() -> None:
    for name in protocols.__all__:
        assert hasattr(protocols, name), name
