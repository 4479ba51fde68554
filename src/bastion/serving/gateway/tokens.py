"""Counting a prompt's tokens: Anthropic's ``count_tokens``, and the context check.

How exact a count is depends on what serves the endpoint:

- **llama.cpp workers**: the worker's own tokenizer counts the prompt's text (message
  contents, tool calls and tool definitions); the chat template's markers are estimated at
  :data:`TEMPLATE_TOKENS_PER_MESSAGE` per message plus :data:`TEMPLATE_TOKENS`. Exact for the
  text, within a few tokens for the template.
- **Anthropic upstreams**: the provider's own ``count_tokens`` (as exact as Anthropic's).
- **anything else** (OpenAI-compatible providers, MLflow pyfunc agents): an estimate of one
  token per :data:`CHARS_PER_TOKEN` characters; typical English text is within ±25 %.

The context check uses the same count: a prompt that cannot fit the context window Bastion
gave a worker is refused with a 400 before any model is called, streamed or not, instead of
the empty stream llama.cpp would answer.
"""

from __future__ import annotations

from bastion.errors import BastionError, ContextLengthExceeded
from bastion.serving.control.routing import Upstream
from bastion.serving.gateway.upstream import UpstreamClient
from bastion.serving.protocols import ChatRequest, to_anthropic_request
from bastion.serving.protocols.chat import prompt_text

CHARS_PER_TOKEN = 4
TEMPLATE_TOKENS_PER_MESSAGE = 4
TEMPLATE_TOKENS = 4


def _overhead(chat: ChatRequest) -> int:
    return TEMPLATE_TOKENS + TEMPLATE_TOKENS_PER_MESSAGE * len(chat.messages)


def estimate(chat: ChatRequest) -> int:
    """A tokenizer-free estimate of the prompt's tokens."""
    return -(-len(prompt_text(chat)) // CHARS_PER_TOKEN) + _overhead(chat)


async def count_prompt_tokens(
    upstreams: UpstreamClient, entity: Upstream, chat: ChatRequest
) -> int:
    """The prompt's tokens as ``entity`` counts them, as exactly as it can be asked (see the
    module docstring); an upstream that cannot be asked gives the estimate."""
    try:
        if entity.kind == "anthropic":
            body = to_anthropic_request(chat, model=entity.upstream_model)
            body.pop("max_tokens", None)
            body.pop("stream", None)
            return await upstreams.count_anthropic_tokens(entity, body)
        if entity.runtime == "llama.cpp":
            return await upstreams.count_tokens(entity, prompt_text(chat)) + _overhead(chat)
    except BastionError:
        pass  # the estimate below
    return estimate(chat)


async def check_context(upstreams: UpstreamClient, entity: Upstream, chat: ChatRequest) -> None:
    """Raise :class:`ContextLengthExceeded` if the prompt cannot fit ``entity``'s context window.

    Costs nothing for prompts whose UTF-8 length already proves they fit (no token is shorter
    than a byte); longer ones are counted by the worker's tokenizer.
    """
    limit = entity.context_tokens
    if not limit or entity.runtime != "llama.cpp":
        return
    text = prompt_text(chat)
    if len(text.encode()) + _overhead(chat) < limit:
        return
    try:
        tokens = await upstreams.count_tokens(entity, text) + _overhead(chat)
    except BastionError:
        return  # the worker answers for itself (and an empty stream is reported as an error)
    if tokens >= limit:
        raise ContextLengthExceeded(
            f"The prompt is about {tokens} tokens, more than the {limit}-token context window "
            f"of the model serving this endpoint ({entity.served_entity_name}); shorten the "
            "conversation or the tool definitions."
        )
