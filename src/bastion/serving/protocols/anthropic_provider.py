"""Anthropic as an upstream: canonical requests out, Anthropic replies back to chat shape.

Used when a served entity is an external Anthropic model. The gateway sends
:func:`to_anthropic_request` to ``POST {base}/v1/messages``, then turns the reply into a
``chat.completion`` with :func:`from_anthropic_message`, or, for a stream, feeds each decoded
SSE event to :class:`AnthropicUpstreamStream` and passes the resulting chunks on to the
client's translator like any other upstream's.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from bastion.errors import UpstreamError
from bastion.serving.protocols.chat import ChatRequest, Json, message_text
from bastion.serving.protocols.errors import RequestValidationError

#: Anthropic ``stop_reason`` -> chat-completions ``finish_reason``.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

DEFAULT_MAX_TOKENS = 4096


def to_anthropic_request(
    request: ChatRequest, *, model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> Json:
    """The Anthropic Messages body for ``request``, addressed to ``model``.

    System messages, wherever they are, are joined into ``system``; tool results become
    ``tool_result`` blocks in a user turn; consecutive turns of one role are merged, as
    Anthropic requires alternating roles. ``max_tokens`` is required there, so
    ``default_max_tokens`` fills in when the client gave none.
    """
    system: list[str] = []
    messages: list[Json] = []
    for message in request.messages:
        role = message["role"]
        if role in ("system", "developer"):
            system.append(message_text(message.get("content")))
            continue
        if role == "tool":
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message["tool_call_id"],
                    "content": message_text(message.get("content")),
                }
            ]
            role = "user"
        elif role == "assistant":
            blocks = _assistant_blocks(message)
        else:
            blocks = _user_blocks(message.get("content"))
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    body: Json = {
        "model": model,
        "max_tokens": request.max_tokens or default_max_tokens,
        "messages": messages,
    }
    if system:
        body["system"] = "\n".join(system)
    if request.stop:
        body["stop_sequences"] = request.stop
    if request.temperature is not None:
        body["temperature"] = min(request.temperature, 1.0)  # Anthropic's range is 0..1
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.tools:
        body["tools"] = [_tool(tool["function"]) for tool in request.tools]
        choice = _tool_choice(request.tool_choice)
        if request.parallel_tool_calls is False:
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice is not None:
            body["tool_choice"] = choice
    if request.stream:
        body["stream"] = True
    return body


def _tool(function: Json) -> Json:
    tool: Json = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _tool_choice(choice: str | Json | None) -> Json | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        return {"type": "tool", "name": choice["function"]["name"]}
    return None


def _image_block(url: str) -> Json:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0]
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _user_blocks(content: Any) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[Json] = []
    for part in content or ():
        kind = part.get("type")
        if kind == "text":
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part["image_url"]["url"]))
        else:
            raise RequestValidationError(
                f"Content parts of type {kind!r} cannot be sent to an Anthropic model.",
                param="messages",
                code="unsupported_value",
            )
    return blocks


def _assistant_blocks(message: Json) -> list[Json]:
    blocks: list[Json] = []
    text = message_text(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call["function"]
        try:
            arguments = orjson.loads(function["arguments"] or "{}")
        except orjson.JSONDecodeError:
            raise RequestValidationError(
                f"The arguments of tool call {call['id']!r} are not valid JSON; an Anthropic "
                "model needs them as a JSON object.",
                param="messages",
                code="invalid_value",
            ) from None
        blocks.append(
            {"type": "tool_use", "id": call["id"], "name": function["name"], "input": arguments}
        )
    return blocks


def _openai_usage(usage: Json | None) -> Json:
    usage = usage or {}
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (
        (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
    )
    completion = usage.get("output_tokens") or 0
    out: Json = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def _finish(stop_reason: Any, stop_sequence: Any) -> Json:
    """``finish_reason`` plus, vLLM-style, the matched ``stop_reason`` string when known."""
    finish: Json = {"finish_reason": FINISH_REASONS.get(stop_reason or "end_turn", "stop")}
    if stop_reason == "stop_sequence" and isinstance(stop_sequence, str):
        finish["stop_reason"] = stop_sequence
    return finish


def from_anthropic_message(message: Json) -> Json:
    """An Anthropic ``message`` as an OpenAI ``chat.completion``."""
    texts: list[str] = []
    calls: list[Json] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {
                        "name": block["name"],
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    reply: Json = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        reply["tool_calls"] = calls
    choice: Json = {"index": 0, "message": reply, "logprobs": None}
    choice.update(_finish(message.get("stop_reason"), message.get("stop_sequence")))
    return {
        "id": message.get("id") or "msg",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model") or "",
        "choices": [choice],
        "usage": _openai_usage(message.get("usage")),
    }


class AnthropicUpstreamStream:
    """Anthropic stream events (decoded ``data:`` objects) as OpenAI chat-completion chunks.

    >>> stream = AnthropicUpstreamStream()
    >>> chunks = stream.feed({"type": "message_start", "message": {"id": "msg_1",
    ...     "model": "claude", "usage": {"input_tokens": 5, "output_tokens": 0}}})
    >>> chunks[0]["choices"][0]["delta"]
    {'role': 'assistant', 'content': ''}
    """

    def __init__(self) -> None:
        self.id = "msg"
        self.model = ""
        self.created = int(time.time())
        self.done = False
        self._usage: Json = {}
        self._tools: dict[int, int] = {}  # content block index -> tool-call index

    def _chunk(self, delta: Json, finish: Json | None = None) -> Json:
        choice: Json = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        if finish:
            choice.update(finish)
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def feed(self, event: Json) -> list[Json]:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text") or ""})]
            if delta.get("type") == "input_json_delta":
                position = self._tools.get(event.get("index", 0))
                if position is None:
                    return []
                arguments = delta.get("partial_json") or ""
                call = {"index": position, "function": {"arguments": arguments}}
                return [self._chunk({"tool_calls": [call]})]
            return []  # thinking and signature deltas have no chat-completions form
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                position = self._tools[event.get("index", 0)] = len(self._tools)
                call = {
                    "index": position,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""},
                }
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = message.get("id") or self.id
            self.model = message.get("model") or self.model
            self._usage.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            delta = event.get("delta") or {}
            usage = event.get("usage") or {}
            self._usage.update({k: v for k, v in usage.items() if v is not None})
            return [self._chunk({}, _finish(delta.get("stop_reason"), delta.get("stop_sequence")))]
        if kind == "message_stop":
            self.done = True
            return [{**self._chunk({}), "choices": [], "usage": _openai_usage(self._usage)}]
        if kind == "error":
            error = event.get("error") or {}
            raise UpstreamError(f"The Anthropic upstream failed mid-stream: {error.get('message')}")
        return []  # ping, content_block_stop
