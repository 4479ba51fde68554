"""A tiny OpenAI- and Anthropic-compatible upstream on loopback, for tests that need a fast,
predictable model.

Run it as a process (``python upstream_stub.py --port N --reply TEXT``), as the supervisor
does with a worker, or in a thread with :func:`start_stub`. It answers ``GET /v1/models``,
``POST /v1/chat/completions`` and ``POST /v1/messages`` (each with ``stream``) and
``POST /v1/messages/count_tokens``, replying ``TEXT`` and recording the ``Authorization``
header and the bodies it saw.

Scripted behaviour, for the real clients' tests (``tests/clients``):

- ``tool_call = (name, arguments)``: while the conversation holds no tool result and the
  request offers a tool of that name, the reply is a call of it; once a tool result is in
  the conversation, the reply is ``TEXT`` followed by ``[tool said: <the result>]``.
- ``context_tokens = N``: a prompt longer than about N tokens (4 characters each) is
  answered as llama.cpp's server does: a 400 without a stream, an empty 200 stream with one.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StubServer(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port: int, reply: str) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.reply = reply
        self.seen_authorization: list[str | None] = []
        self.seen_traceparent: list[str | None] = []
        self.seen_bodies: list[dict[str, Any]] = []
        self.seen_paths: list[str] = []
        #: When set, every chat completion is answered with this (status, raw body).
        self.failure: tuple[int, str] | None = None
        #: ``(tool name, arguments)`` to call while no tool result is in the conversation.
        self.tool_call: tuple[str, dict[str, Any]] | None = None
        #: Prompts longer than this many tokens (about 4 characters each) are refused the
        #: way llama.cpp refuses them.
        self.context_tokens: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: StubServer

    def log_message(self, *_args: Any) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.seen_authorization.append(
            self.headers.get("authorization") or self.headers.get("x-api-key")
        )
        self.server.seen_traceparent.append(self.headers.get("traceparent"))
        self.server.seen_bodies.append(body)
        self.server.seen_paths.append(self.path)
        if self.path not in ("/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens"):
            self._json(404, {"error": {"message": "not found"}})
            return
        if self.server.failure is not None:
            status, text = self.server.failure
            data = text.encode()
            self.send_response(status)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        anthropic = self.path.startswith("/v1/messages")
        prompt = json.dumps(body.get("messages", [])) + json.dumps(body.get("system", ""))
        tokens = len(prompt) // 4
        if self.path == "/v1/messages/count_tokens":
            self._json(200, {"input_tokens": tokens})
            return
        limit = self.server.context_tokens
        if limit is not None and tokens >= limit:
            if body.get("stream"):
                self._sse([])  # what llama.cpp's server sends: 200, then nothing
            else:
                message = f"Requested tokens ({tokens}) exceed context window of {limit}"
                self._json(400, {"error": {"message": message, "type": "invalid_request_error"}})
            return
        text, call = self._turn(body, anthropic)
        if anthropic:
            self._anthropic(body, text, call)
        else:
            self._openai(body, text, call)

    def _turn(self, body: dict[str, Any], anthropic: bool) -> tuple[str, dict[str, Any] | None]:
        """The reply text, or the tool call to make, for this conversation."""
        results = list(_tool_results(body.get("messages") or [], anthropic))
        if results:
            return f"{self.server.reply} [tool said: {results[-1][:400]}]", None
        wanted = self.server.tool_call
        names = {
            (t.get("function") or {}).get("name") or t.get("name") for t in body.get("tools") or []
        }
        if wanted is not None and wanted[0] in names:
            return "", {
                "id": f"call_{len(self.server.seen_bodies)}",
                "name": wanted[0],
                "arguments": wanted[1],
            }
        return self.server.reply, None

    def _sse(self, events: list[tuple[str | None, dict[str, Any] | str]]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for name, data in events:
            text = data if isinstance(data, str) else json.dumps(data)
            head = f"event: {name}\n" if name else ""
            self.wfile.write(f"{head}data: {text}\n\n".encode())
        self.wfile.flush()
        self.close_connection = True

    def _openai(self, body: dict[str, Any], text: str, call: dict[str, Any] | None) -> None:
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}  # as ever
        tool_calls = None
        if call is not None:
            tool_calls = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
                }
            ]
        finish = "tool_calls" if call is not None else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            self._json(
                200,
                {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "stub"),
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                },
            )
            return
        base = {
            "id": "chatcmpl-stub",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model", "stub"),
        }
        delta: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            delta = {"role": "assistant", "tool_calls": [{**tool_calls[0], "index": 0}]}
        events: list[tuple[str | None, dict[str, Any] | str]] = [
            (None, {**base, "choices": [{"index": 0, "delta": delta}]}),
            (None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}),
            (None, {**base, "choices": [], "usage": usage}),
            (None, "[DONE]"),
        ]
        self._sse(events)

    def _anthropic(self, body: dict[str, Any], text: str, call: dict[str, Any] | None) -> None:
        content: list[dict[str, Any]] = []
        if text:
            content.append({"type": "text", "text": text})
        if call is not None:
            content.append(
                {
                    "type": "tool_use",
                    "id": "toolu_" + call["id"],
                    "name": call["name"],
                    "input": call["arguments"],
                }
            )
        message = {
            "id": "msg_stub",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "stub"),
            "content": content,
            "stop_reason": "tool_use" if call is not None else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
        if not body.get("stream"):
            self._json(200, message)
            return
        self._sse(list(_anthropic_events(message)))


def _tool_results(messages: list[Any], anthropic: bool) -> Iterator[str]:
    """The text of every tool result in a conversation, in order."""
    for message in messages:
        if not isinstance(message, dict):
            continue
        if not anthropic and message.get("role") == "tool":
            yield _text(message.get("content"))
        content = message.get("content")
        if anthropic and isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    yield _text(block.get("content"))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _anthropic_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    start = {**message, "content": [], "stop_reason": None}
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opened = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            opened = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": opened},
        )
        yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": 1},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def start_stub(reply: str, port: int = 0) -> StubServer:
    """Serve in a daemon thread; call ``shutdown()`` and ``server_close()`` when done."""
    server = StubServer(port, reply)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def external_model(stub: StubServer, *, anthropic: bool = False) -> dict[str, Any]:
    """An ``external_model`` block answered by ``stub`` as an OpenAI-compatible provider, or
    (``anthropic``) as an Anthropic one."""
    if anthropic:
        return {
            "provider": "anthropic",
            "name": "claude-stub",
            "task": "llm/v1/chat",
            "anthropic_config": {"anthropic_api_base": stub.base_url},
        }
    return {
        "provider": "openai",
        "name": "stub",
        "task": "llm/v1/chat",
        "openai_config": {"openai_api_base": stub.base_url},
    }


def external_entity(stub: StubServer, name: str = "stub") -> dict[str, Any]:
    """A served entity ``name`` answered by ``stub``."""
    return {"name": name, "external_model": external_model(stub)}


def deploy_stub_model(server: Any, stub: StubServer) -> None:
    """As admin: register ``main.default.helpdesk_model`` v1 as an external model answered by
    ``stub`` and serve it at endpoint ``helpdesk`` (``server`` is a conftest RunningServer)."""
    with server.admin() as admin:
        model = {"catalog_name": "main", "schema_name": "default", "name": "helpdesk_model"}
        assert admin.post("/api/2.1/unity-catalog/models", json=model).status_code == 200
        version = admin.post(
            "/api/2.1/unity-catalog/models/versions",
            json={
                "catalog_name": "main",
                "schema_name": "default",
                "model_name": "helpdesk_model",
                "external_model": external_model(stub),
            },
        )
        assert version.status_code == 200, version.text
        config = {
            "served_entities": [
                {"name": "v1", "entity_name": "main.default.helpdesk_model", "entity_version": "1"}
            ]
        }
        reply = admin.post(
            "/api/2.0/serving-endpoints", json={"name": "helpdesk", "config": config}
        )
        assert reply.status_code == 200, reply.text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply", default="stub reply")
    args = parser.parse_args()
    StubServer(args.port, args.reply).serve_forever()


if __name__ == "__main__":
    main()
