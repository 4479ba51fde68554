"""Calls to upstream model servers (OpenAI-compatible or Anthropic), over pooled connections.

The transport is :mod:`bastion.serving.gateway.http1`, a lean keep-alive HTTP/1.1 client (see
its docstring for why not aiohttp or httpx).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import orjson

from bastion.errors import DeadlineExceeded, UpstreamError
from bastion.serving.control.routing import Upstream
from bastion.serving.gateway.http1 import ConnectionFailed, Http1Pool, Url


class RetryableUpstreamError(UpstreamError):
    """An upstream failure worth trying the next served entity for (fallback)."""


@lru_cache(maxsize=1024)
def _url(kind: str, base_url: str) -> Url:
    base = base_url.rstrip("/")
    if kind == "anthropic":
        url = f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"
    elif base.endswith("/v1"):
        url = f"{base}/chat/completions"
    else:
        url = f"{base}/v1/chat/completions"
    return Url.parse(url)


def _headers(target: Upstream, traceparent: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if traceparent:
        headers["traceparent"] = traceparent
    if target.api_key:
        if target.kind == "anthropic":
            headers["x-api-key"] = target.api_key
            headers["anthropic-version"] = "2023-06-01"
        else:
            headers["authorization"] = f"Bearer {target.api_key}"
    return headers


def _failure(status: int, text: str) -> UpstreamError:
    message = f"The model server answered {status}: {text[:300]}"
    if status == 429 or status >= 500:
        return RetryableUpstreamError(message)
    error = UpstreamError(message)
    error.status_code = 400 if status in (400, 413, 422) else 502
    error.error_code = "BAD_REQUEST" if error.status_code == 400 else "UPSTREAM_ERROR"
    return error


@contextmanager
def _starting() -> Iterator[None]:
    """Failures before an upstream answer has begun, as the gateway's errors: timeouts and
    broken connections may fall back to another entity; an unusable URL or header may not."""
    try:
        yield
    except TimeoutError:
        raise RetryableUpstreamError("The model server timed out.") from None
    except ConnectionFailed as exc:
        raise RetryableUpstreamError(f"The model server is unreachable: {exc}") from None
    except ValueError as exc:
        raise UpstreamError(f"The served entity's configuration is not usable: {exc}") from None


class UpstreamClient:
    """One connection pool per process, used from the serving event loop."""

    def __init__(self, *, max_connections: int = 512) -> None:
        self._pool = Http1Pool(max_per_origin=max_connections)

    async def complete(
        self, target: Upstream, body: dict[str, Any], traceparent: str | None = None
    ) -> dict[str, Any]:
        with _starting():
            response = await self._pool.request(
                _url(target.kind, target.base_url),
                orjson.dumps(body),
                _headers(target, traceparent),
                timeout=target.timeout_s,
            )
        if response.status >= 400:
            raise _failure(response.status, response.body.decode(errors="replace"))
        try:
            reply: dict[str, Any] = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            raise RetryableUpstreamError(
                "The model server sent a reply that is not JSON."
            ) from None
        return reply

    async def stream(
        self, target: Upstream, body: dict[str, Any], traceparent: str | None = None
    ) -> AsyncIterator[bytes]:
        """Yield raw SSE bytes; raises before the first byte if the upstream fails to start."""
        with _starting():
            head, chunks = await self._pool.stream(
                _url(target.kind, target.base_url),
                orjson.dumps(body),
                _headers(target, traceparent),
                timeout=target.timeout_s,
            )
        if head.status >= 400:
            text = b"".join([chunk async for chunk in _bounded(chunks)])
            raise _failure(head.status, text.decode(errors="replace"))
        return self._iterate(chunks)

    @staticmethod
    async def _iterate(chunks: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield chunk
        except TimeoutError:
            raise DeadlineExceeded("The model server stopped sending mid-stream.") from None
        except ConnectionFailed as exc:
            raise UpstreamError(f"The model server broke off the stream: {exc}") from None
        finally:
            await chunks.aclose()

    async def aclose(self) -> None:
        await self._pool.aclose()


async def _bounded(
    chunks: AsyncGenerator[bytes, None], limit: int = 64 * 1024
) -> AsyncIterator[bytes]:
    """An error body, read up to ``limit`` bytes; the connection is closed past that."""
    size = 0
    try:
        async for chunk in chunks:
            yield chunk[: limit - size]
            size += len(chunk)
            if size >= limit:
                break
    except (TimeoutError, ConnectionFailed):
        return
    finally:
        await chunks.aclose()
