"""A :class:`~bastion.redteam.models.ChatModel` over a Bastion serving endpoint's
OpenAI-compatible API (``{host}/serving-endpoints/chat/completions``, ``model`` = endpoint)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from bastion.errors import UpstreamError
from bastion.redteam.models import Message


class EndpointChatModel:
    """Talks to one serving endpoint with a bearer token.

    ``extra_body`` returns fields merged into every request body (the scanner uses it for
    ``client_request_id``); pass ``client`` to share a connection pool. ``headers`` are sent
    with every request (the scanner's ``X-Bastion-Scan-*``), ``on_response(response,
    seconds)`` sees every HTTP reply, and ``max_tokens`` caps what callers ask for.
    """

    def __init__(
        self,
        host: str,
        token: str,
        endpoint: str,
        *,
        temperature: float | None = 0.0,
        timeout: float = 180.0,
        client: httpx.AsyncClient | None = None,
        extra_body: Callable[[], Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        on_response: Callable[[httpx.Response, float], None] | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self.url = f"{host.rstrip('/')}/serving-endpoints/chat/completions"
        self.endpoint = endpoint
        self.temperature = temperature
        self.extra_body = extra_body
        self._headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
        self.on_response = on_response
        self.max_tokens = max_tokens
        self._client = client
        self._timeout = httpx.Timeout(timeout, connect=10.0)

    async def complete(self, messages: list[Message], *, max_tokens: int = 256) -> str:
        body: dict[str, Any] = {
            "model": self.endpoint,
            "messages": messages,
            "max_tokens": min(max_tokens, self.max_tokens) if self.max_tokens else max_tokens,
        }
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.extra_body is not None:
            body.update(self.extra_body())
        started = time.perf_counter()
        if self._client is not None:
            response = await self._client.post(self.url, json=body, headers=self._headers)
        else:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(self.url, json=body, headers=self._headers)
        if self.on_response is not None:
            self.on_response(response, time.perf_counter() - started)
        if response.status_code >= 400:
            raise UpstreamError(
                f"Endpoint {self.endpoint!r} answered HTTP {response.status_code}: "
                f"{response.text[:200]}"
            )
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise UpstreamError(
                f"Endpoint {self.endpoint!r} returned no chat completion."
            ) from None
        return str(content or "")
