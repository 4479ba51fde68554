"""The official OpenAI and Anthropic SDKs against a real HTTP server built on the translators.

A small Starlette app on 127.0.0.1 parses each request with the protocol functions, answers
from a canned upstream (OpenAI chat chunks, cut into odd-sized byte pieces and decoded with
the SSE decoder, or Anthropic events for the Anthropic-provider path), and renders the reply
in the client's API. If the SDKs can read it, real clients can.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bastion.errors import BastionError
from bastion.serving.protocols import (
    AnthropicUpstreamStream,
    ChatRequest,
    ClientApi,
    StreamAccumulator,
    UpstreamChunkDecoder,
    from_anthropic_message,
    parse_request,
    render_error,
    render_reply,
    stream_translator,
    to_anthropic_request,
)

ANTHROPIC_UPSTREAM = "claude-upstream"  # endpoint whose served entity is an Anthropic model
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "smollm2",
        "choices": [choice],
    }


def upstream_chunks(with_tools: bool) -> list[dict[str, Any]]:
    chunks = [_chunk({"role": "assistant", "content": ""})]
    if with_tools:
        chunks += [
            _chunk({"content": "Let me check."}),
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_w",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                }
            ),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
            _chunk({}, "tool_calls"),
        ]
    else:
        chunks += [_chunk({"content": p}) for p in ("Hello", " from", " Bastion!")]
        chunks.append(_chunk({}, "stop"))
    chunks.append({**_chunk({}), "choices": [], "usage": USAGE})
    return chunks


ANTHROPIC_EVENTS: list[dict[str, Any]] = [
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
            "usage": {"input_tokens": 20, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "there"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
    {"type": "message_stop"},
]


def upstream_stream(request: ChatRequest) -> Iterator[dict[str, Any]]:
    """Upstream chunks as the gateway would decode them off the wire."""
    if request.model == ANTHROPIC_UPSTREAM:
        converter = AnthropicUpstreamStream()
        for event in ANTHROPIC_EVENTS:
            yield from converter.feed(event)
        return
    raw = b"".join(
        b"data: " + orjson.dumps(c) + b"\n\n" for c in upstream_chunks(bool(request.tools))
    )
    raw += b"data: [DONE]\n\n"
    decoder = UpstreamChunkDecoder()
    for start in range(0, len(raw), 37):  # odd-sized pieces split lines mid-way
        yield from decoder.feed(raw[start : start + 37])
    assert decoder.done


def upstream_completion(request: ChatRequest) -> dict[str, Any]:
    if request.model == ANTHROPIC_UPSTREAM:
        message = {
            "id": "msg_up",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [{"type": "text", "text": "Hi there"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 2},
        }
        return from_anthropic_message(message)
    accumulator = StreamAccumulator()
    for chunk in upstream_chunks(bool(request.tools)):
        accumulator.add(chunk)
    return accumulator.completion()


def make_app() -> Starlette:
    sent_upstream: list[dict[str, Any]] = []

    async def serve(request: Request, api: ClientApi) -> Response:
        try:
            parsed = parse_request(
                api,
                await request.body(),
                endpoint=request.path_params.get("name"),
                max_tokens_cap=1000,
            )
        except BastionError as error:
            status, body = render_error(api, error)
            return Response(body, status, media_type="application/json")
        if parsed.model == ANTHROPIC_UPSTREAM:
            sent_upstream.append(to_anthropic_request(parsed, model="claude-x"))
        else:
            sent_upstream.append(parsed.to_openai(model="smollm2"))
        if not parsed.stream:
            reply = render_reply(upstream_completion(parsed), parsed)
            return Response(orjson.dumps(reply), media_type="application/json")
        translator = stream_translator(parsed)

        def events() -> Iterator[bytes]:
            for chunk in upstream_stream(parsed):
                yield translator.feed(chunk)
            yield translator.finish()

        return StreamingResponse(events(), media_type="text/event-stream")

    def route(path: str, api: ClientApi) -> Route:
        async def endpoint(request: Request) -> Response:
            return await serve(request, api)

        return Route(path, endpoint, methods=["POST"])

    app = Starlette(
        routes=[
            route("/serving-endpoints/chat/completions", ClientApi.CHAT_COMPLETIONS),
            route("/serving-endpoints/responses", ClientApi.RESPONSES),
            route("/serving-endpoints/anthropic/v1/messages", ClientApi.ANTHROPIC_MESSAGES),
            route("/serving-endpoints/{name}/invocations", ClientApi.INVOCATIONS),
        ]
    )
    app.state.sent_upstream = sent_upstream
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    app = make_app()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/serving-endpoints", app.state.sent_upstream
    uv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def openai_client(server: tuple[str, list[dict[str, Any]]]) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0], api_key="dapi-test", max_retries=0)


@pytest.fixture(scope="module")
def anthropic_client(server: tuple[str, list[dict[str, Any]]]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server[0] + "/anthropic", api_key="unused", max_retries=0)


HELLO = [{"role": "user", "content": "hello"}]


# ---------------------------------------------------------------- OpenAI chat completions


def test_openai_chat_plain(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(model="my-ep", messages=HELLO)
    assert completion.model == "my-ep"
    assert completion.choices[0].message.content == "Hello from Bastion!"
    assert completion.usage is not None and completion.usage.total_tokens == 17


def test_openai_chat_stream_with_usage(openai_client: openai.OpenAI) -> None:
    stream = openai_client.chat.completions.create(
        model="my-ep",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello from Bastion!"
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_openai_chat_stream_tool_calls(
    openai_client: openai.OpenAI, server: tuple[str, list[dict[str, Any]]]
) -> None:
    with openai_client.chat.completions.stream(
        model="my-ep",
        messages=HELLO,
        tools=[WEATHER],
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}
    assert final.choices[0].finish_reason == "tool_calls"
    assert server[1][-1]["tools"] == [WEATHER]


def test_openai_chat_validation_error(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model="my-ep", messages=HELLO, max_tokens=5000)
    assert caught.value.status_code == 400
    assert caught.value.param == "max_tokens"
    assert "at most 1000" in caught.value.message


def test_openai_chat_through_an_anthropic_upstream(
    openai_client: openai.OpenAI, server: tuple[str, list[dict[str, Any]]]
) -> None:
    stream = openai_client.chat.completions.create(
        model=ANTHROPIC_UPSTREAM,
        messages=[{"role": "system", "content": "terse"}, *HELLO],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=64,
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hi there"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 20
    sent = server[1][-1]
    assert (sent["model"], sent["system"], sent["max_tokens"]) == ("claude-x", "terse", 64)
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]


# ---------------------------------------------------------------- OpenAI Responses


def test_responses_plain(
    openai_client: openai.OpenAI, server: tuple[str, list[dict[str, Any]]]
) -> None:
    response = openai_client.responses.create(
        model="my-ep", input="hello", instructions="Be brief.", max_output_tokens=50
    )
    assert response.output_text == "Hello from Bastion!"
    assert response.usage is not None and response.usage.total_tokens == 17
    assert server[1][-1]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert server[1][-1]["max_tokens"] == 50


def test_responses_stream_events(openai_client: openai.OpenAI) -> None:
    events = list(openai_client.responses.create(model="my-ep", input="hello", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello from Bastion!"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == 5


def test_responses_stream_helper_with_function_calls(openai_client: openai.OpenAI) -> None:
    tool = {
        "type": "function",
        "name": "get_weather",
        "parameters": WEATHER["function"]["parameters"],
    }
    with openai_client.responses.stream(model="my-ep", input="weather?", tools=[tool]) as stream:
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.name, orjson.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert final.output_text == "Let me check."


def test_responses_function_call_output_round_trip(
    openai_client: openai.OpenAI, server: tuple[str, list[dict[str, Any]]]
) -> None:
    openai_client.responses.create(
        model="my-ep",
        input=[
            {"role": "user", "content": "weather?"},
            {
                "type": "function_call",
                "call_id": "call_w",
                "name": "get_weather",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "call_w", "output": "18C"},
        ],
    )
    messages = server[1][-1]["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "call_w"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_w", "content": "18C"}


# ---------------------------------------------------------------- Anthropic Messages


def test_anthropic_plain(anthropic_client: anthropic.Anthropic) -> None:
    message = anthropic_client.messages.create(
        model="my-ep",
        max_tokens=100,
        messages=HELLO,
        system="Be brief.",
    )
    assert message.content[0].text == "Hello from Bastion!"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 5)


def test_anthropic_stream_text(anthropic_client: anthropic.Anthropic) -> None:
    with anthropic_client.messages.stream(model="my-ep", max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from Bastion!"
    assert final.usage.output_tokens == 5 and final.usage.input_tokens == 12


def test_anthropic_stream_tool_use(
    anthropic_client: anthropic.Anthropic, server: tuple[str, list[dict[str, Any]]]
) -> None:
    tool = {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": WEATHER["function"]["parameters"],
    }
    with anthropic_client.messages.stream(
        model="my-ep",
        max_tokens=100,
        messages=HELLO,
        tools=[tool],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    text, tool_use = final.content
    assert text.text == "Let me check."
    assert (tool_use.name, tool_use.input) == ("get_weather", {"city": "Paris"})
    assert server[1][-1]["tools"][0]["function"]["name"] == "get_weather"


def test_anthropic_raw_stream_events(anthropic_client: anthropic.Anthropic) -> None:
    events = list(
        anthropic_client.messages.create(
            model="my-ep",
            max_tokens=100,
            messages=HELLO,
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]


def test_anthropic_tool_result_round_trip(
    anthropic_client: anthropic.Anthropic, server: tuple[str, list[dict[str, Any]]]
) -> None:
    anthropic_client.messages.create(
        model="my-ep",
        max_tokens=100,
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}],
            },
        ],
    )
    messages = server[1][-1]["messages"]
    call = messages[1]["tool_calls"][0]
    assert (call["id"], orjson.loads(call["function"]["arguments"])) == (
        "toolu_1",
        {"city": "Paris"},
    )
    assert messages[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}


def test_anthropic_errors_reach_the_sdk(anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.messages.create(
            model="my-ep",
            max_tokens=100,
            messages=[{"role": "robot", "content": "x"}],  # type: ignore[list-item]
        )
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------- native invocations


def test_invocations_chat_and_errors(server: tuple[str, list[dict[str, Any]]]) -> None:
    base, sent = server
    with httpx.Client(base_url=base) as client:
        reply = client.post(
            "/my-ep/invocations",
            json={"messages": HELLO, "client_request_id": "req-1", "usage_context": {"t": "a"}},
        )
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"] == "Hello from Bastion!"
        assert "client_request_id" not in sent[-1] and "usage_context" not in sent[-1]
        bad = client.post("/my-ep/invocations", json={"messages": HELLO, "max_tokens": -1})
        assert bad.status_code == 400
        assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        with client.stream(
            "POST", "/my-ep/invocations", json={"input": "hello", "stream": True}
        ) as streamed:
            lines = [line for line in streamed.iter_lines() if line.startswith("event: ")]
        assert lines[0] == "event: response.created"
        assert lines[-1] == "event: response.completed"
