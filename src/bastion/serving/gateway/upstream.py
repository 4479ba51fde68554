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

from bastion.egress import EgressPolicy
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


def _root(base_url: str) -> str:
    """An OpenAI-style base URL (``http://host:port/v1``) without its ``/v1``."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


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
    """The error for an upstream's non-2xx answer. Its body goes in ``detail``, which the
    gateway shows only to those who may manage the endpoint: an upstream's words (internal
    hosts, other tenants' data, a misdirected service's page) are not every caller's to read."""
    message = f"The model server answered {status}."
    error = (
        RetryableUpstreamError(message)
        if status == 429 or status >= 500
        else UpstreamError(message)
    )
    if not isinstance(error, RetryableUpstreamError):
        error.status_code = 400 if status in (400, 413, 422) else 502
        error.error_code = "BAD_REQUEST" if error.status_code == 400 else "UPSTREAM_ERROR"
    error.detail = text[:300]
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
    """Connection pools of one process, used from the serving event loop.

    Upstreams whose URL an ordinary user wrote (``egress_restricted``) go through a pool of
    their own that resolves each new connection's host through the egress policy and
    connects to exactly the addresses it allowed; connections are never shared between the
    two pools, so a name an admin's entity reaches internally stays out of users' reach.
    """

    def __init__(self, *, max_connections: int = 512, egress: EgressPolicy | None = None) -> None:
        self._pool = Http1Pool(max_per_origin=max_connections)
        self._restricted = Http1Pool(
            max_per_origin=max_connections, resolver=(egress or EgressPolicy()).resolve
        )

    def _pool_for(self, target: Upstream) -> Http1Pool:
        return self._restricted if target.egress_restricted else self._pool

    async def complete(
        self, target: Upstream, body: dict[str, Any], traceparent: str | None = None
    ) -> dict[str, Any]:
        with _starting():
            response = await self._pool_for(target).request(
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

    async def count_tokens(self, target: Upstream, text: str) -> int:
        """The number of tokens ``text`` is to a llama.cpp worker's own tokenizer
        (llama-cpp-python's ``POST /extras/tokenize/count``)."""
        body = {"input": text, "model": target.upstream_model}
        reply = await self._post_json(
            _root(target.base_url) + "/extras/tokenize/count", target, body
        )
        count = reply.get("count")
        if not isinstance(count, int):
            raise UpstreamError("The model server's tokenizer sent no count.")
        return count

    async def count_anthropic_tokens(self, target: Upstream, body: dict[str, Any]) -> int:
        """An Anthropic upstream's own count (``POST /v1/messages/count_tokens``)."""
        base = target.base_url.rstrip("/")
        url = (
            f"{base}/messages/count_tokens"
            if base.endswith("/v1")
            else f"{base}/v1/messages/count_tokens"
        )
        reply = await self._post_json(url, target, body)
        count = reply.get("input_tokens")
        if not isinstance(count, int):
            raise UpstreamError("The model provider sent no token count.")
        return count

    async def _post_json(self, url: str, target: Upstream, body: dict[str, Any]) -> dict[str, Any]:
        with _starting():
            response = await self._pool_for(target).request(
                Url.parse(url), orjson.dumps(body), _headers(target, None), timeout=target.timeout_s
            )
        if response.status >= 400:
            raise _failure(response.status, response.body.decode(errors="replace"))
        try:
            reply = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            raise UpstreamError("The model server sent a reply that is not JSON.") from None
        if not isinstance(reply, dict):
            raise UpstreamError("The model server sent a reply that is not a JSON object.")
        return reply

    async def stream(
        self, target: Upstream, body: dict[str, Any], traceparent: str | None = None
    ) -> AsyncIterator[bytes]:
        """Yield raw SSE bytes; raises before the first byte if the upstream fails to start."""
        with _starting():
            head, chunks = await self._pool_for(target).stream(
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
        await self._restricted.aclose()


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
