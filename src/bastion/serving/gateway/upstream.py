"""Calls to upstream model servers (OpenAI-compatible or Anthropic), over pooled connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import orjson

from bastion.errors import DeadlineExceeded, UpstreamError


class UpstreamTarget(Protocol):
    """What the gateway needs to know about one served entity to call it."""

    kind: str  # "worker" | "openai" | "anthropic"
    base_url: str
    api_key: str | None
    timeout_s: float


class RetryableUpstreamError(UpstreamError):
    """An upstream failure worth trying the next served entity for (fallback)."""


def _url(target: UpstreamTarget) -> str:
    base = target.base_url.rstrip("/")
    if target.kind == "anthropic":
        return f"{base}/v1/messages" if not base.endswith("/v1") else f"{base}/messages"
    if base.endswith("/v1"):
        return f"{base}/chat/completions"
    return f"{base}/v1/chat/completions"


def _headers(target: UpstreamTarget) -> dict[str, str]:
    headers = {"content-type": "application/json"}
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


class UpstreamClient:
    def __init__(self, *, max_connections: int = 512) -> None:
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            timeout=httpx.Timeout(120.0, connect=5.0),
        )

    async def complete(self, target: UpstreamTarget, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(
                _url(target),
                content=orjson.dumps(body),
                headers=_headers(target),
                timeout=target.timeout_s,
            )
        except httpx.TimeoutException:
            raise RetryableUpstreamError("The model server timed out.") from None
        except httpx.HTTPError as exc:
            raise RetryableUpstreamError(f"The model server is unreachable: {exc!r}") from None
        if response.status_code >= 400:
            raise _failure(response.status_code, response.text)
        try:
            reply: dict[str, Any] = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise RetryableUpstreamError(
                "The model server sent a reply that is not JSON."
            ) from None
        return reply

    async def stream(self, target: UpstreamTarget, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Yield raw SSE bytes; raises before the first byte if the upstream fails to start."""
        request = self._client.build_request(
            "POST",
            _url(target),
            content=orjson.dumps(body),
            headers=_headers(target),
            timeout=target.timeout_s,
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise RetryableUpstreamError("The model server timed out.") from None
        except httpx.HTTPError as exc:
            raise RetryableUpstreamError(f"The model server is unreachable: {exc!r}") from None
        if response.status_code >= 400:
            text = (await response.aread()).decode(errors="replace")
            await response.aclose()
            raise _failure(response.status_code, text)
        return self._iterate(response)

    async def _iterate(self, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        except httpx.TimeoutException:
            raise DeadlineExceeded("The model server stopped sending mid-stream.") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"The model server broke off the stream: {exc!r}") from None
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()
