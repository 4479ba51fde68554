"""Rendering upstream chat completions (plain and streamed) into each client API's shapes.

Every rendered object and stream event is validated against the official SDKs' own types, so
a field that an SDK requires and we forget fails here.
"""

from __future__ import annotations

import copy
from typing import Any

import anthropic.types as anthropic_types
import openai.types.chat as chat_types
import openai.types.responses as responses_types
import orjson
import pytest
from pydantic import TypeAdapter

from bastion.errors import RateLimited, UpstreamError
from bastion.serving.protocols import (
    AnthropicMessagesStream,
    ChatCompletionsStream,
    ChatRequest,
    ResponsesStream,
    SSEParser,
    StreamAccumulator,
    parse_anthropic_messages,
    parse_chat_completions,
    parse_invocations,
    parse_responses,
    render_anthropic_message,
    render_chat_completion,
    render_reply,
    render_response,
    stream_translator,
)

RESPONSES_EVENT = TypeAdapter(responses_types.ResponseStreamEvent)
ANTHROPIC_EVENT = TypeAdapter(anthropic_types.RawMessageStreamEvent)

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def text_completion(finish: str = "stop", **choice_extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "smollm2-135m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there!"},
                "finish_reason": finish,
                "logprobs": None,
                **choice_extra,
            }
        ],
        "usage": USAGE,
    }


def tool_completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-tool",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "smollm2-135m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {**USAGE, "prompt_tokens_details": {"cached_tokens": 4}},
    }


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "smollm2-135m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def usage_chunk() -> dict[str, Any]:
    return {**chunk({}), "choices": [], "usage": USAGE}


def text_chunks() -> list[dict[str, Any]]:
    return [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"content": " there!"}),
        chunk({}, "stop"),
        usage_chunk(),
    ]


def tool_chunks() -> list[dict[str, Any]]:
    def call(index: int, **fields: Any) -> dict[str, Any]:
        return chunk({"tool_calls": [{"index": index, **fields}]})

    return [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Checking."}),
        call(0, id="call_1", type="function", function={"name": "get_weather", "arguments": ""}),
        call(0, function={"arguments": '{"city": '}),
        call(0, function={"arguments": '"Paris"}'}),
        call(1, id="call_2", type="function", function={"name": "get_weather", "arguments": "{}"}),
        chunk({}, "tool_calls"),
        usage_chunk(),
    ]


def chat_request(**extra: Any) -> ChatRequest:
    body = {"model": "my-endpoint", "messages": [{"role": "user", "content": "hi"}], **extra}
    return parse_chat_completions(body)


def responses_request(**extra: Any) -> ChatRequest:
    return parse_responses({"model": "my-endpoint", "input": "hi", **extra})


def anthropic_request(**extra: Any) -> ChatRequest:
    body = {
        "model": "my-endpoint",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }
    return parse_anthropic_messages(body)


def run_stream(translator: Any, chunks: list[dict[str, Any]]) -> list[tuple[str | None, Any]]:
    """Feed chunks, then parse the produced bytes back with our own SSE parser."""
    raw = b"".join(translator.feed(c) for c in chunks) + translator.finish()
    parser = SSEParser()
    events = parser.feed(raw) + parser.flush()
    return [(e.event, None if e.data == b"[DONE]" else orjson.loads(e.data)) for e in events]


# ---------------------------------------------------------------- plain responses


def test_chat_completion_passthrough_is_named_after_the_endpoint() -> None:
    upstream = text_completion()
    rendered = render_chat_completion(upstream, chat_request())
    completion = chat_types.ChatCompletion.model_validate(rendered)
    assert completion.model == "my-endpoint"
    assert completion.choices[0].message.content == "Hello there!"
    assert upstream["model"] == "smollm2-135m"  # the upstream object is not mutated


def test_chat_completion_keeps_tool_calls() -> None:
    completion = chat_types.ChatCompletion.model_validate(
        render_reply(tool_completion(), chat_request(tools=TOOLS))
    )
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}


def test_responses_object_text_and_usage() -> None:
    request = responses_request(instructions="Be brief.", metadata={"k": "v"})
    response = responses_types.Response.model_validate(render_response(text_completion(), request))
    assert response.output_text == "Hello there!"
    assert response.status == "completed"
    assert response.model == "my-endpoint"
    assert response.instructions == "Be brief."
    assert response.metadata == {"k": "v"}
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 5)
    assert response.usage.total_tokens == 17


def test_responses_object_function_calls() -> None:
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    request = responses_request(tools=tools)
    response = responses_types.Response.model_validate(render_response(tool_completion(), request))
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_1", "get_weather", '{"city": "Paris"}')
    ]
    assert response.usage is not None and response.usage.input_tokens_details.cached_tokens == 4
    assert response.tools[0].name == "get_weather"


def test_responses_object_length_is_incomplete() -> None:
    request = responses_request(max_output_tokens=5)
    response = responses_types.Response.model_validate(
        render_response(text_completion("length"), request)
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 5


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use")],
)
def test_anthropic_message_stop_reasons(finish: str, stop_reason: str) -> None:
    upstream = tool_completion() if finish == "tool_calls" else text_completion(finish)
    message = anthropic_types.Message.model_validate(
        render_anthropic_message(upstream, anthropic_request())
    )
    assert message.stop_reason == stop_reason
    assert message.model == "my-endpoint"


def test_anthropic_message_blocks_and_usage() -> None:
    message = anthropic_types.Message.model_validate(
        render_reply(tool_completion(), anthropic_request())
    )
    (block,) = message.content
    assert isinstance(block, anthropic_types.ToolUseBlock)
    assert (block.id, block.name, block.input) == ("call_1", "get_weather", {"city": "Paris"})
    # Anthropic counts cache reads apart from input tokens; OpenAI counts them in.
    assert message.usage.input_tokens == 8
    assert message.usage.cache_read_input_tokens == 4
    assert message.usage.output_tokens == 5


def test_anthropic_stop_sequence_when_upstream_names_it() -> None:
    request = anthropic_request(stop_sequences=["END"])
    message = anthropic_types.Message.model_validate(
        render_anthropic_message(text_completion("stop", stop_reason="END"), request)
    )
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")


def test_invocations_reply_shape_follows_the_body() -> None:
    chat = parse_invocations({"messages": [{"role": "user", "content": "hi"}]}, endpoint="ep")
    chat_types.ChatCompletion.model_validate(render_reply(text_completion(), chat))
    agent = parse_invocations({"input": [{"role": "user", "content": "hi"}]}, endpoint="ep")
    response = responses_types.Response.model_validate(render_reply(text_completion(), agent))
    assert response.output_text == "Hello there!"
    assert response.model == "ep"


# ---------------------------------------------------------------- streams


def test_chat_stream_passthrough_hides_usage_unless_asked() -> None:
    events = run_stream(ChatCompletionsStream(chat_request(stream=True)), text_chunks())
    assert events[-1] == (None, None)  # data: [DONE]
    chunks = [chat_types.ChatCompletionChunk.model_validate(data) for _, data in events[:-1]]
    assert {c.model for c in chunks} == {"my-endpoint"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there!"
    assert all(c.usage is None for c in chunks)

    asked = chat_request(stream=True, stream_options={"include_usage": True})
    events = run_stream(ChatCompletionsStream(asked), text_chunks())
    last = chat_types.ChatCompletionChunk.model_validate(events[-2][1])
    assert last.usage is not None and last.usage.total_tokens == 17


def test_responses_stream_text_events() -> None:
    translator = ResponsesStream(responses_request(stream=True))
    events = run_stream(translator, text_chunks())
    parsed = [RESPONSES_EVENT.validate_python(data) for _, data in events]
    assert [e.type for e in parsed] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [name for name, _ in events] == [e.type for e in parsed]  # `event:` matches `type`
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    done = parsed[-1]
    assert isinstance(done, responses_types.ResponseCompletedEvent)
    assert done.response.output_text == "Hello there!"
    assert done.response.usage is not None and done.response.usage.output_tokens == 5
    assert translator.completion()["choices"][0]["message"]["content"] == "Hello there!"


def test_responses_stream_tool_calls() -> None:
    events = run_stream(ResponsesStream(responses_request(stream=True)), tool_chunks())
    parsed = [RESPONSES_EVENT.validate_python(data) for _, data in events]
    kinds = [e.type for e in parsed]
    assert kinds.count("response.function_call_arguments.done") == 2
    assert kinds.index("response.output_item.done") < kinds.index("response.output_item.added", 3)
    deltas = [
        e.delta
        for e in parsed
        if isinstance(e, responses_types.ResponseFunctionCallArgumentsDeltaEvent)
    ]
    assert "".join(deltas) == '{"city": "Paris"}{}'
    final = parsed[-1]
    assert isinstance(final, responses_types.ResponseCompletedEvent)
    output = final.response.output
    assert [item.type for item in output] == ["message", "function_call", "function_call"]
    assert output[1].arguments == '{"city": "Paris"}'
    assert output[2].call_id == "call_2"
    indexes = [e.output_index for e in parsed if e.type == "response.output_item.added"]
    assert indexes == [0, 1, 2]


def test_anthropic_stream_text_events() -> None:
    translator = AnthropicMessagesStream(anthropic_request(stream=True))
    events = run_stream(translator, text_chunks())
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    parsed = [ANTHROPIC_EVENT.validate_python(data) for name, data in events if name != "ping"]
    text = "".join(
        e.delta.text for e in parsed if isinstance(e, anthropic_types.RawContentBlockDeltaEvent)
    )
    assert text == "Hello there!"
    delta = parsed[-2]
    assert isinstance(delta, anthropic_types.RawMessageDeltaEvent)
    assert delta.delta.stop_reason == "end_turn"
    assert (delta.usage.input_tokens, delta.usage.output_tokens) == (12, 5)


def test_anthropic_stream_tool_use_blocks() -> None:
    events = run_stream(AnthropicMessagesStream(anthropic_request(stream=True)), tool_chunks())
    parsed = [ANTHROPIC_EVENT.validate_python(data) for name, data in events if name != "ping"]
    starts = [e for e in parsed if isinstance(e, anthropic_types.RawContentBlockStartEvent)]
    assert [s.content_block.type for s in starts] == ["text", "tool_use", "tool_use"]
    assert [s.index for s in starts] == [0, 1, 2]
    stops = [e.index for e in parsed if isinstance(e, anthropic_types.RawContentBlockStopEvent)]
    assert stops == [0, 1, 2]
    partial = "".join(
        e.delta.partial_json
        for e in parsed
        if isinstance(e, anthropic_types.RawContentBlockDeltaEvent) and e.index == 1
    )
    assert orjson.loads(partial) == {"city": "Paris"}
    delta = next(e for e in parsed if isinstance(e, anthropic_types.RawMessageDeltaEvent))
    assert delta.delta.stop_reason == "tool_use"


def test_stream_error_events_use_each_api_shape() -> None:
    error = RateLimited("Too many requests for endpoint my-endpoint; retry in 10 s.")
    chat = ChatCompletionsStream(chat_request(stream=True)).error(error)
    assert orjson.loads(chat.removeprefix(b"data: "))["error"]["type"] == "rate_limit_error"
    responses = SSEParser().feed(ResponsesStream(responses_request(stream=True)).error(error))
    event = RESPONSES_EVENT.validate_python(responses[0].json())
    assert isinstance(event, responses_types.ResponseErrorEvent)
    assert event.message.startswith("Too many requests")
    anthropic_events = SSEParser().feed(
        AnthropicMessagesStream(anthropic_request(stream=True)).error(UpstreamError("boom"))
    )
    assert anthropic_events[0].event == "error"
    body = anthropic_types.ErrorResponse.model_validate(anthropic_events[0].json())
    assert body.error.type == "api_error"


def test_empty_upstream_stream_still_closes_properly() -> None:
    for request in (responses_request(stream=True), anthropic_request(stream=True)):
        translator = stream_translator(request)
        events = run_stream(translator, [])
        assert events[-1][0] in ("response.completed", "message_stop")


def test_accumulator_assembles_text_tools_and_usage() -> None:
    acc = StreamAccumulator()
    for c in tool_chunks():
        acc.add(c)
    completion = chat_types.ChatCompletion.model_validate(acc.completion("my-endpoint"))
    message = completion.choices[0].message
    assert message.content == "Checking."
    assert [(t.id, t.function.arguments) for t in message.tool_calls or []] == [
        ("call_1", '{"city": "Paris"}'),
        ("call_2", "{}"),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert acc.usage.total_tokens == 17


def test_translators_do_not_mutate_upstream_chunks() -> None:
    chunks = tool_chunks()
    before = copy.deepcopy(chunks)
    for request in (chat_request(stream=True), responses_request(stream=True)):
        run_stream(stream_translator(request), chunks)
    run_stream(stream_translator(anthropic_request(stream=True)), chunks)
    assert chunks == before
