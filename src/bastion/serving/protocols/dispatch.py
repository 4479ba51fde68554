"""One entry point per step, chosen by the API the client called.

The gateway calls :func:`parse_request` on the body, forwards ``request.to_openai(...)``
upstream, and answers with :func:`render_reply` or, for a stream, feeds each upstream chunk to
the translator from :func:`stream_translator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bastion.serving.protocols.anthropic_messages import (
    AnthropicMessagesStream,
    parse_anthropic_messages,
    render_anthropic_message,
)
from bastion.serving.protocols.chat import ChatRequest, ClientApi, Json
from bastion.serving.protocols.invocations import parse_invocations
from bastion.serving.protocols.openai_chat import (
    ChatCompletionsStream,
    parse_chat_completions,
    render_chat_completion,
)
from bastion.serving.protocols.openai_responses import (
    ResponsesStream,
    parse_responses,
    render_response,
)
from bastion.serving.protocols.streaming import StreamTranslator


def parse_request(
    api: ClientApi,
    body: bytes | str | Mapping[str, Any],
    *,
    endpoint: str | None = None,
    max_tokens_cap: int | None = None,
) -> ChatRequest:
    """Validate ``body`` as a request of ``api``; ``endpoint`` is needed for ``INVOCATIONS``.

    Raises :class:`~bastion.serving.protocols.errors.RequestValidationError` (400) or
    :class:`~bastion.serving.protocols.errors.MalformedBody` (400).
    """
    if api is ClientApi.CHAT_COMPLETIONS:
        return parse_chat_completions(body, max_tokens_cap=max_tokens_cap)
    if api is ClientApi.RESPONSES:
        return parse_responses(body, max_tokens_cap=max_tokens_cap)
    if api is ClientApi.ANTHROPIC_MESSAGES:
        return parse_anthropic_messages(body, max_tokens_cap=max_tokens_cap)
    if endpoint is None:
        raise ValueError("parse_request(INVOCATIONS, ...) needs the endpoint name")
    return parse_invocations(body, endpoint=endpoint, max_tokens_cap=max_tokens_cap)


def render_reply(upstream: Json, request: ChatRequest) -> Json:
    """An upstream ``chat.completion`` in the shape the client asked for."""
    if request.reply_format is ClientApi.RESPONSES:
        return render_response(upstream, request)
    if request.reply_format is ClientApi.ANTHROPIC_MESSAGES:
        return render_anthropic_message(upstream, request)
    return render_chat_completion(upstream, request)


def stream_translator(request: ChatRequest) -> StreamTranslator:
    """A fresh translator from upstream chunks to the client's stream events."""
    if request.reply_format is ClientApi.RESPONSES:
        return ResponsesStream(request)
    if request.reply_format is ClientApi.ANTHROPIC_MESSAGES:
        return AnthropicMessagesStream(request)
    return ChatCompletionsStream(request)
