"""A test app: tells what the proxy sent it, streams, echoes bodies and WebSocket messages.

Run by Bastion as a real app process (``app.yaml``), under uvicorn on its loopback port.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

RELEASE = Path("release.flag")
ENV_SHOWN = ("MY_SECRET", "GREETING", "BASTION_APP_NAME", "BASTION_HOST", "BASTION_CLIENT_ID")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
        return
    path = scope["path"]
    if path == "/headers":
        await _json(send, _described(scope))
    elif path == "/env":
        shown = {k: os.environ.get(k) for k in ENV_SHOWN}
        shown["has_client_secret"] = bool(os.environ.get("BASTION_CLIENT_SECRET"))
        shown["leaked"] = sorted(k for k in os.environ if k.startswith("BASTION_TEST_LEAK"))
        shown["pid"] = os.getpid()
        shown["cwd"] = os.getcwd()
        await _json(send, shown)
    elif path == "/as-app":
        # The app's own identity: our client picks up BASTION_CLIENT_ID/SECRET by itself.
        from bastion.client.http import BastionClient

        def whoami() -> dict[str, Any]:
            with BastionClient.from_profile() as client:
                return client.me()

        await _json(send, await asyncio.to_thread(whoami))
    elif path == "/redirect":
        await send(
            {
                "type": "http.response.start",
                "status": 302,
                "headers": [
                    (b"location", b"/headers"),
                    (b"set-cookie", b"appcookie=1; Path=/; Domain=evil.example"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream":
        RELEASE.unlink(missing_ok=True)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        while not RELEASE.exists():  # the test releases the rest once it has the first event
            await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b"data: second\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"data: done\n\n"})
    elif path == "/release":
        RELEASE.touch()
        await _json(send, {"released": True})
    elif path == "/upload":
        size = 0
        more = True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await _json(send, {"received": size})
    else:
        await _json(send, {"path": path}, status=404)


def _described(scope: dict[str, Any]) -> dict[str, Any]:
    headers: dict[str, list[str]] = {}
    for key, value in scope["headers"]:
        headers.setdefault(key.decode("latin-1"), []).append(value.decode("latin-1"))
    return {
        "path": scope["path"],
        "query": scope.get("query_string", b"").decode(),
        "headers": headers,
    }


async def _json(send: Any, body: Any, status: int = 200) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(_described(scope))})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": "echo:" + message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})
