"""A fast OpenAI-compatible test upstream for benchmarks and fault tests (loopback only).

``python benchmarks/upstream.py --port 9100`` answers ``POST /v1/chat/completions`` (plain and
``stream: true``) with a fixed reply, ``GET /v1/models`` and ``GET /health``. It reads the
request body but does no work, so it measures what sits in front of it.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

REPLY = orjson.dumps(
    {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "stub",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the stub upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }
)


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: bool = False) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "stub",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["choices"] = []
        body["usage"] = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    return b"data: " + orjson.dumps(body) + b"\n\n"


STREAM = b"".join(
    [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hello from "}),
        _chunk({"content": "the stub upstream."}),
        _chunk({}, "stop"),
        _chunk({}, usage=True),
        b"data: [DONE]\n\n",
    ]
)
MODELS = orjson.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"]
    if scope["method"] == "POST" and path.endswith("/chat/completions"):
        stream = b'"stream":true' in body or b'"stream": true' in body
        payload, kind = (STREAM, b"text/event-stream") if stream else (REPLY, b"application/json")
    elif path.endswith("/models"):
        payload, kind = MODELS, b"application/json"
    elif path == "/health":
        payload, kind = b'{"status":"ok"}', b"application/json"
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", kind), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
