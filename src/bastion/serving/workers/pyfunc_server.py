"""An OpenAI-compatible worker for an MLflow pyfunc model (``ResponsesAgent``, ``ChatAgent``).

Run as ``python -m bastion.serving.workers.pyfunc_server --model-dir DIR --port N``. It needs
``mlflow-skinny`` (with numpy and pandas) in the environment; without it the worker exits at
once with a message in its log, and the supervisor reports the entity as failed.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (``stream`` answers with the
chunks of the whole answer, usage included), ``POST /v1/responses`` and ``POST /invocations``
(the model's own input shape).

Tracing: a request's W3C ``traceparent`` (the gateway sends its CLIENT span) becomes the
parent of every MLflow span the model opens while answering, so the agent's spans join the
gateway's trace. Where they are exported is MLflow's (OpenTelemetry's) standard environment,
``OTEL_EXPORTER_OTLP_TRACES_*``, which Bastion sets to its own receiver.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from bastion.serving.protocols import Json, completion_chunks
from bastion.serving.protocols.sse import encode_data


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def traced(traceparent: str | None, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with MLflow's tracing context continued from ``traceparent``."""
    if not traceparent:
        return fn(*args)
    from mlflow.tracing import set_tracing_context_from_http_request_headers

    with set_tracing_context_from_http_request_headers({"traceparent": traceparent}):
        return fn(*args)


def _as_dict(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(exclude_none=True)
    if isinstance(value, list) and len(value) == 1:
        return _as_dict(value[0])
    return value


class PyfuncAdapter:
    """Turns chat requests into the model's input and its output back into a chat answer."""

    def __init__(self, model: Any, name: str) -> None:
        self.model = model
        self.name = name
        self.style = self._style(model)

    @staticmethod
    def _style(model: Any) -> str:
        try:
            schema = model.metadata.get_input_schema()
            names = set(schema.input_names()) if schema is not None else set()
        except Exception:
            names = set()
        return "chat_agent" if "messages" in names and "input" not in names else "responses"

    def predict(self, body: Any) -> Any:
        return _as_dict(self.model.predict(body))

    def chat(self, body: Json) -> Json:
        messages = [
            {"role": m.get("role", "user"), "content": _text_of(m.get("content"))}
            for m in body.get("messages", [])
        ]
        if self.style == "chat_agent":
            result = self.predict({"messages": messages}) or {}
            answers = [m for m in result.get("messages", []) if m.get("role") == "assistant"]
            text = "".join(_text_of(m.get("content")) for m in answers)
            usage = result.get("usage") or {}
        else:
            result = self.predict({"input": messages}) or {}
            text = "".join(
                _text_of(item.get("content"))
                for item in result.get("output", [])
                if isinstance(item, dict) and item.get("type") == "message"
            )
            usage = {}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": int(usage.get("prompt_tokens", 0)),
                "completion_tokens": int(usage.get("completion_tokens", 0)),
                "total_tokens": int(usage.get("total_tokens", 0)),
            },
        }


def _sse(completion: Json) -> Iterator[bytes]:
    for chunk in completion_chunks(completion):
        yield encode_data(chunk)
    yield b"data: [DONE]\n\n"


def build_app(adapter: PyfuncAdapter) -> Any:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def models(_request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": adapter.name, "object": "model"}]})

    async def chat(request: Request) -> Response:
        body = await request.json()
        parent = request.headers.get("traceparent")
        try:
            completion = await run_in_threadpool(traced, parent, adapter.chat, body)
        except Exception as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "model_error"}}, 500)
        if body.get("stream"):
            return StreamingResponse(_sse(completion), media_type="text/event-stream")
        return JSONResponse(completion)

    async def invocations(request: Request) -> Response:
        body = await request.json()
        parent = request.headers.get("traceparent")
        try:
            result = await run_in_threadpool(traced, parent, adapter.predict, body)
        except Exception as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "model_error"}}, 500)
        return JSONResponse(result)

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/responses", invocations, methods=["POST"]),
            Route("/invocations", invocations, methods=["POST"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="model")
    args = parser.parse_args(argv)
    try:
        import mlflow.pyfunc
    except ImportError:
        print(
            "The MLflow pyfunc worker needs mlflow-skinny: pip install mlflow-skinny numpy pandas",
            file=sys.stderr,
        )
        return 3
    import uvicorn

    model = mlflow.pyfunc.load_model(args.model_dir)
    uvicorn.run(
        build_app(PyfuncAdapter(model, args.name)),
        host=args.host,
        port=args.port,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
