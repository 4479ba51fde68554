"""The canonical request every client API is parsed into, and small shared helpers.

The canonical request is an OpenAI chat-completions request, because every upstream the
gateway calls speaks that (llama.cpp, MLflow pyfunc servers, OpenAI-compatible providers) or
is translated from it (Anthropic providers). Messages, tools and tool calls are kept as plain
OpenAI-shaped dicts: they are forwarded upstream as they are, and building objects for them
would only cost time on the hot path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

Json = dict[str, Any]


class ClientApi(StrEnum):
    """The API a client called; decides how requests are parsed and how errors look."""

    CHAT_COMPLETIONS = "chat/completions"
    RESPONSES = "responses"
    ANTHROPIC_MESSAGES = "anthropic/v1/messages"
    INVOCATIONS = "invocations"


@dataclass(slots=True)
class ChatRequest:
    """A validated client request, in OpenAI chat-completions terms.

    ``api`` is the API the client called (it decides the error shape); ``reply_format`` is
    the shape replies are rendered in, which differs only for ``/invocations``: a ``messages``
    body is answered as a chat completion, an ``input`` body as a Responses object.
    """

    api: ClientApi
    reply_format: ClientApi
    model: str
    messages: list[Json]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    stream: bool = False
    tools: list[Json] | None = None
    tool_choice: str | Json | None = None
    parallel_tool_calls: bool | None = None
    #: Other OpenAI parameters forwarded upstream unchanged (seed, response_format, ...).
    params: Json = field(default_factory=dict)
    #: Whether the client asked for usage in its stream (chat: ``stream_options``).
    include_usage: bool = False
    #: Databricks governance fields: logged, never forwarded upstream.
    client_request_id: str | None = None
    usage_context: Json | None = None
    #: Request fields the client API echoes back in its response (Responses: instructions,
    #: metadata, tools as sent, ...).
    echo: Json = field(default_factory=dict)
    #: What the gateway changed about the request on its way upstream (a hosted tool it
    #: dropped, ...): short codes, logged with the payload row (``logging_error_codes``).
    notes: list[str] = field(default_factory=list)

    def to_openai(
        self, *, model: str | None = None, stream_usage: bool = True, fold_system: bool = False
    ) -> Json:
        """The body to POST to an OpenAI-compatible upstream's ``/v1/chat/completions``.

        ``model`` is the upstream's model name (defaults to the name the client used).
        Streams always ask for usage (``stream_options.include_usage``) so that tokens can be
        counted and logged; translators drop it again where the client did not ask for it.
        ``fold_system`` joins every system message into one leading system message, for
        upstreams whose chat template takes a system prompt only first (llama.cpp workers).
        """
        messages = fold_system_messages(self.messages) if fold_system else self.messages
        body: Json = {"model": self.model if model is None else model, "messages": messages}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self.stop:
            body["stop"] = self.stop
        if self.tools:
            body["tools"] = self.tools
            if self.tool_choice is not None:
                body["tool_choice"] = self.tool_choice
            if self.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = self.parallel_tool_calls
        if self.params:
            body.update(self.params)
        if self.stream:
            body["stream"] = True
            if stream_usage or self.include_usage:
                body["stream_options"] = {"include_usage": True}
        return body


@dataclass(slots=True)
class Usage:
    """Token counts of one request, in the terms the usage and inference tables use."""

    input_tokens: int = 0
    output_tokens: int = 0
    #: Part of ``input_tokens`` served from a prompt cache.
    cached_tokens: int = 0
    #: Part of ``output_tokens`` spent on reasoning.
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_openai(cls, usage: Json | None) -> Usage:
        """Read an OpenAI ``usage`` object (missing or null fields count as 0)."""
        if not usage:
            return cls()
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            input_tokens=usage.get("prompt_tokens") or 0,
            output_tokens=usage.get("completion_tokens") or 0,
            cached_tokens=prompt_details.get("cached_tokens") or 0,
            reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
        )

    def to_openai(self) -> Json:
        usage: Json = {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage


def fold_system_messages(messages: list[Json]) -> list[Json]:
    """``messages`` with every ``system``/``developer`` message joined (by a newline, in
    order) into one leading system message; the list itself when that is already so.

    >>> fold_system_messages([{"role": "user", "content": "hi"},
    ...                       {"role": "system", "content": "Be brief."}])
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'hi'}]
    """
    late = False
    seen_other = False
    for message in messages:
        if message.get("role") in ("system", "developer"):
            late = late or seen_other
        else:
            seen_other = True
    leading = sum(1 for m in messages if m.get("role") in ("system", "developer"))
    if not late and leading <= 1:
        return messages
    texts = [
        message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
    ]
    rest = [m for m in messages if m.get("role") not in ("system", "developer")]
    return [{"role": "system", "content": "\n".join(t for t in texts if t)}, *rest]


def prompt_text(request: ChatRequest) -> str:
    """Every text the model reads of ``request``: message contents, tool-call arguments and
    tool definitions, joined by newlines (for counting tokens)."""
    parts: list[str] = []
    for message in request.messages:
        parts.append(message_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            parts.append(f"{function.get('name') or ''} {function.get('arguments') or ''}")
    if request.tools:
        parts.append(orjson.dumps(request.tools).decode())
    return "\n".join(parts)


def new_id(prefix: str) -> str:
    """A random id such as ``msg_1f0c...``, in the style each API uses for its objects."""
    return prefix + os.urandom(12).hex()


def message_text(content: Any) -> str:
    """The text of an OpenAI message ``content`` (a string, a part list, or null)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text") or part.get("refusal") or ""
        for part in content
        if isinstance(part, dict) and part.get("type") in ("text", "refusal")
    )
