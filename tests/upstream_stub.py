"""A tiny OpenAI-compatible upstream on loopback, for tests that need a fast, predictable model.

Run it as a process (``python upstream_stub.py --port N --reply TEXT``), as the supervisor
does with a worker, or in a thread with :func:`start_stub`. It answers ``GET /v1/models`` and
``POST /v1/chat/completions`` (with ``stream``), replying ``TEXT`` and recording the
``Authorization`` header it saw.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
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
        #: When set, every chat completion is answered with this (status, raw body).
        self.failure: tuple[int, str] | None = None

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
        self.server.seen_authorization.append(self.headers.get("authorization"))
        self.server.seen_traceparent.append(self.headers.get("traceparent"))
        self.server.seen_bodies.append(body)
        if self.path != "/v1/chat/completions":
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
        completion = {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.server.reply},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        self._json(200, completion)


def start_stub(reply: str, port: int = 0) -> StubServer:
    """Serve in a daemon thread; call ``shutdown()`` and ``server_close()`` when done."""
    server = StubServer(port, reply)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def external_model(stub: StubServer) -> dict[str, Any]:
    """An ``external_model`` block answered by ``stub`` as an OpenAI-compatible provider."""
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
