"""Anthropic as an upstream: canonical requests out, Anthropic replies and events back in."""

from __future__ import annotations

from typing import Any

import anthropic.types as anthropic_types
import openai.types.chat as chat_types
import orjson
import pytest

from bastion.errors import UpstreamError
from bastion.serving.protocols import (
    AnthropicMessagesStream,
    AnthropicUpstreamStream,
    RequestValidationError,
    SSEParser,
    from_anthropic_message,
    parse_anthropic_messages,
    parse_chat_completions,
    render_anthropic_message,
    to_anthropic_request,
)

CLIENT_BODY: dict[str, Any] = {
    "model": "claude-ep",
    "max_tokens": 256,
    "system": "You are terse.",
    "stop_sequences": ["STOP"],
    "temperature": 0.5,
    "tools": [
        {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ],
    "tool_choice": {"type": "tool", "name": "get_weather"},
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "text", "text": "Thanks!"},
            ],
        },
    ],
}

EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_up",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 1, "cache_read_input_tokens": 10},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "On it."}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"city":'},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": ' "Rome"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
    {"type": "message_stop"},
]


def test_anthropic_client_request_survives_the_round_trip() -> None:
    request = parse_anthropic_messages(CLIENT_BODY)
    upstream = to_anthropic_request(request, model="claude-x")
    expected = {**CLIENT_BODY, "model": "claude-x"}
    assert upstream["messages"] == expected["messages"]
    for key in ("system", "stop_sequences", "temperature", "max_tokens", "tool_choice"):
        assert upstream[key] == expected[key], key
    assert upstream["tools"] == CLIENT_BODY["tools"]


def test_chat_request_to_anthropic_merges_turns_and_maps_options() -> None:
    request = parse_chat_completions(
        {
            "model": "ep",
            "messages": [
                {"role": "system", "content": "A"},
                {"role": "developer", "content": "B"},
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        },
                        {
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"x":1}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "r1"},
                {"role": "tool", "tool_call_id": "c2", "content": "r2"},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,QQ=="}}
                    ],
                },
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "temperature": 1.7,
        }
    )
    body = to_anthropic_request(request, model="claude-x", default_max_tokens=321)
    assert body["system"] == "A\nB"
    assert body["max_tokens"] == 321
    assert body["temperature"] == 1.0
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [b["input"] for b in body["messages"][1]["content"]] == [{}, {"x": 1}]
    results = body["messages"][2]["content"]
    assert [b["type"] for b in results] == ["tool_result", "tool_result", "image"]
    assert results[2]["source"] == {"type": "base64", "media_type": "image/png", "data": "QQ=="}
    # The converted body is itself a valid Anthropic request: our own parser accepts it.
    again = parse_anthropic_messages(body)
    assert [m["role"] for m in again.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "user",
    ]


def test_invalid_tool_arguments_cannot_be_sent_to_anthropic() -> None:
    request = parse_chat_completions(
        {
            "model": "ep",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}
                    ],
                }
            ],
        }
    )
    with pytest.raises(RequestValidationError, match="not valid JSON"):
        to_anthropic_request(request, model="claude-x")


def test_anthropic_message_becomes_a_chat_completion() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Done"},
            {"type": "tool_use", "id": "toolu_2", "name": "f", "input": {"a": [1]}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 5},
    }
    anthropic_types.Message.model_validate(message)  # the fixture is a real Anthropic message
    completion = chat_types.ChatCompletion.model_validate(from_anthropic_message(message))
    choice = completion.choices[0]
    assert choice.message.content == "Done"
    assert choice.finish_reason == "tool_calls"
    call = (choice.message.tool_calls or [])[0]
    assert orjson.loads(call.function.arguments) == {"a": [1]}
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 3)


def test_stop_sequence_survives_both_directions() -> None:
    message = {
        "id": "msg_1",
        "model": "claude-x",
        "content": [{"type": "text", "text": "a"}],
        "stop_reason": "stop_sequence",
        "stop_sequence": "STOP",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    completion = from_anthropic_message(message)
    assert completion["choices"][0]["finish_reason"] == "stop"
    again = render_anthropic_message(completion, parse_anthropic_messages(CLIENT_BODY))
    assert (again["stop_reason"], again["stop_sequence"]) == ("stop_sequence", "STOP")


def test_anthropic_events_become_chunks_and_back() -> None:
    upstream = AnthropicUpstreamStream()
    chunks = [c for event in EVENTS for c in upstream.feed(event)]
    assert upstream.done
    for c in chunks:
        chat_types.ChatCompletionChunk.model_validate(c)
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 30,
        "completion_tokens": 9,
        "total_tokens": 39,
        "prompt_tokens_details": {"cached_tokens": 10},
    }

    # Anthropic upstream -> chunks -> Anthropic client: the same content comes back out.
    translator = AnthropicMessagesStream(parse_anthropic_messages({**CLIENT_BODY, "stream": True}))
    raw = b"".join(translator.feed(c) for c in chunks) + translator.finish()
    events = [e.json() for e in SSEParser().feed(raw) if e.event != "ping"]
    blocks = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [b["type"] for b in blocks] == ["text", "tool_use"]
    assert blocks[1]["id"] == "toolu_9"
    partial = "".join(
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    )
    assert orjson.loads(partial) == {"city": "Rome"}
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["cache_read_input_tokens"] == 10
    assert delta["usage"]["input_tokens"] == 20


def test_anthropic_stream_error_event_raises() -> None:
    with pytest.raises(UpstreamError, match="Overloaded"):
        AnthropicUpstreamStream().feed(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        )
