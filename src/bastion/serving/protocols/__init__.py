"""Translation between the client APIs the gateway serves and its upstreams.

Pure functions, no I/O: the gateway parses a body into a :class:`ChatRequest` (an OpenAI
chat-completions request plus governance metadata), forwards ``request.to_openai(model=...)``
to an OpenAI-compatible upstream (or :func:`to_anthropic_request` to an Anthropic one), and
renders the reply, or each stream chunk, back in the client's own API. Errors render in each
API's own shape with :func:`render_error`. See ``docs/protocols.md``.
"""

from __future__ import annotations

from bastion.serving.protocols.anthropic_messages import (
    AnthropicMessagesStream,
    parse_anthropic_messages,
    render_anthropic_message,
)
from bastion.serving.protocols.anthropic_provider import (
    AnthropicUpstreamStream,
    from_anthropic_message,
    to_anthropic_request,
)
from bastion.serving.protocols.chat import ChatRequest, ClientApi, Json, Usage
from bastion.serving.protocols.dispatch import parse_request, render_reply, stream_translator
from bastion.serving.protocols.errors import (
    MalformedBody,
    RequestValidationError,
    error_body,
    render_error,
)
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
from bastion.serving.protocols.sse import SSEEvent, SSEParser, UpstreamChunkDecoder
from bastion.serving.protocols.streaming import (
    StreamAccumulator,
    StreamTranslator,
    completion_chunks,
)

__all__ = [
    "AnthropicMessagesStream",
    "AnthropicUpstreamStream",
    "ChatCompletionsStream",
    "ChatRequest",
    "ClientApi",
    "Json",
    "MalformedBody",
    "RequestValidationError",
    "ResponsesStream",
    "SSEEvent",
    "SSEParser",
    "StreamAccumulator",
    "StreamTranslator",
    "UpstreamChunkDecoder",
    "Usage",
    "completion_chunks",
    "error_body",
    "from_anthropic_message",
    "parse_anthropic_messages",
    "parse_chat_completions",
    "parse_invocations",
    "parse_request",
    "parse_responses",
    "render_anthropic_message",
    "render_chat_completion",
    "render_error",
    "render_reply",
    "render_response",
    "stream_translator",
    "to_anthropic_request",
]
