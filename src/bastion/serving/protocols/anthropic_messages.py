"""Anthropic Messages as a client API: requests in, ``message`` objects and events out.

Content blocks map onto chat messages: ``tool_use`` blocks become an assistant message's
``tool_calls``; each ``tool_result`` block becomes a ``tool`` message (sent before the rest of
its user turn); images become ``image_url`` parts. ``thinking`` blocks from earlier turns are
dropped, because a chat-completions upstream cannot take them back. A ``system`` message
inside ``messages`` (Anthropic's mid-conversation system messages, which Claude Code sends)
stays a system message at its place; upstreams that cannot take one there get it folded into
the leading system prompt (:meth:`ChatRequest.to_openai` ``fold_system``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bastion.errors import BastionError
from bastion.serving.protocols.chat import ChatRequest, ClientApi, Json, Usage, message_text, new_id
from bastion.serving.protocols.errors import RequestValidationError, anthropic_error_body
from bastion.serving.protocols.openai_chat import GOVERNANCE_PARAMS, read_governance_fields
from bastion.serving.protocols.sse import encode_event
from bastion.serving.protocols.streaming import StreamTranslator
from bastion.serving.protocols.validation import (
    check_max_tokens,
    check_metadata,
    check_stop,
    invalid_type,
    load_body,
    missing,
    optional_bool,
    optional_number,
    reject_unknown,
    require_str,
)

#: Parameters Anthropic defines that a chat-completions upstream cannot honour; dropped.
IGNORED_PARAMS = frozenset(
    {"metadata", "thinking", "top_k", "service_tier", "container", "context_management"}
    | {"output_config", "inference_geo", "speed"}
)
_HANDLED = frozenset(
    {"model", "max_tokens", "messages", "system", "stop_sequences", "stream", "temperature"}
    | {"top_p", "tools", "tool_choice", "mcp_servers"}
)
KNOWN_PARAMS = IGNORED_PARAMS | GOVERNANCE_PARAMS | _HANDLED
#: What ``/v1/messages/count_tokens`` takes: the prompt, its tools and settings, no sampling.
COUNT_PARAMS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "mcp_servers", "thinking"}
    | {"context_management", "output_config"}
)
_EXTRA = "{key}: Extra inputs are not permitted"

#: Chat-completions ``finish_reason`` -> Anthropic ``stop_reason``.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def parse_anthropic_messages(
    body: bytes | str | Mapping[str, Any],
    *,
    max_tokens_cap: int | None = None,
    count_only: bool = False,
) -> ChatRequest:
    """Validate a ``POST /serving-endpoints/anthropic/v1/messages`` body.

    ``max_tokens`` is required, as in Anthropic's API; unknown fields are rejected with
    Anthropic's "Extra inputs are not permitted". ``count_only`` validates a
    ``/v1/messages/count_tokens`` body instead: no ``max_tokens``, ``stream`` or sampling.

    >>> req = parse_anthropic_messages(
    ...     b'{"model": "claude", "max_tokens": 64, "system": "Be brief.",'
    ...     b' "messages": [{"role": "user", "content": "hi"}]}')
    >>> req.messages, req.max_tokens
    ([{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'hi'}], 64)
    """
    data = load_body(body)
    reject_unknown(data, COUNT_PARAMS if count_only else KNOWN_PARAMS, _EXTRA)
    model = require_str(data, "model")
    if count_only:
        data = {**data, "max_tokens": 1}
    elif "max_tokens" not in data:
        raise missing("max_tokens")
    if data.get("mcp_servers"):
        raise RequestValidationError(
            "mcp_servers: MCP connectors are not supported by this gateway; run the tools "
            "yourself and send them as 'tools'.",
            param="mcp_servers",
        )
    check_metadata(data.get("metadata"), "metadata")
    messages = _system_to_chat(data.get("system"))
    raw = data.get("messages")
    if raw is None:
        raise missing("messages")
    messages.extend(_messages_to_chat(raw))
    tools = _tools_to_chat(data.get("tools"))
    tool_choice, parallel = _tool_choice_to_chat(data.get("tool_choice"), tools)
    request = ChatRequest(
        api=ClientApi.ANTHROPIC_MESSAGES,
        reply_format=ClientApi.ANTHROPIC_MESSAGES,
        model=model,
        messages=messages,
        max_tokens=check_max_tokens(data["max_tokens"], "max_tokens", max_tokens_cap),
        temperature=optional_number(data, "temperature", 0.0, 1.0),
        top_p=optional_number(data, "top_p", 0.0, 1.0),
        stop=check_stop(data.get("stop_sequences"), "stop_sequences", limit=None),
        stream=optional_bool(data, "stream") or False,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
    )
    read_governance_fields(data, request)
    return request


def _system_to_chat(system: Any, where: str = "system") -> list[Json]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    if not isinstance(system, list):
        raise invalid_type(where, "a string or an array of text blocks", system)
    texts = []
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise RequestValidationError(
                f"{where}.{i}: system blocks must be text blocks.", param=f"{where}.{i}"
            )
        text = block.get("text")
        if not isinstance(text, str):
            raise missing(f"{where}.{i}.text")
        texts.append(text)
    return [{"role": "system", "content": "\n".join(texts)}] if texts else []


def _messages_to_chat(messages: Any) -> list[Json]:
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        raise RequestValidationError(
            "messages: at least one message is required.", param="messages"
        )
    out: list[Json] = []
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise invalid_type(where, "an object", message)
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise RequestValidationError(
                f"{where}.role: Input should be 'user', 'assistant' or 'system'; got {role!r}.",
                param=f"{where}.role",
            )
        content = message.get("content")
        if role == "system":
            # A mid-conversation system message: text only, kept at its place.
            texts = _system_to_chat(content, where=f"{where}.content")
            out.extend(texts or [{"role": "system", "content": ""}])
        elif isinstance(content, str):
            out.append({"role": role, "content": content})
        elif isinstance(content, list):
            if role == "user":
                out.extend(_user_blocks(content, where))
            else:
                out.append(_assistant_blocks(content, where))
        elif content is None:
            raise missing(f"{where}.content")
        else:
            raise invalid_type(f"{where}.content", "a string or an array of blocks", content)
    return out


def _image_part(block: Json, where: str) -> Json:
    source = block.get("source")
    if not isinstance(source, dict):
        raise missing(f"{where}.source")
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise RequestValidationError(
            f"{where}.source: only base64 and url image sources are supported.",
            param=f"{where}.source",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _text_of(block: Json, where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise missing(f"{where}.text")
    return text


def _unknown_block(kind: Any, where: str, allowed: str) -> RequestValidationError:
    return RequestValidationError(
        f"{where}.type: unsupported content block type {kind!r}; this gateway accepts {allowed}.",
        param=f"{where}.type",
    )


def _user_blocks(blocks: list[Any], where: str) -> list[Json]:
    tool_messages: list[Json] = []
    parts: list[Json] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        if not isinstance(block, dict):
            raise invalid_type(at, "an object", block)
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": _text_of(block, at)})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            tool_use_id = block.get("tool_use_id")
            if not isinstance(tool_use_id, str):
                raise missing(f"{at}.tool_use_id")
            text, images = _tool_result_content(block.get("content"), at)
            if block.get("is_error"):
                text = f"[tool error] {text}"
            tool_messages.append({"role": "tool", "tool_call_id": tool_use_id, "content": text})
            parts.extend(images)
        else:
            raise _unknown_block(kind, at, "'text', 'image' and 'tool_result' in user turns")
    out = tool_messages
    if parts:
        if all(part["type"] == "text" for part in parts):
            out.append({"role": "user", "content": "".join(p["text"] for p in parts)})
        else:
            out.append({"role": "user", "content": parts})
    elif not tool_messages:
        out.append({"role": "user", "content": ""})
    return out


def _tool_result_content(content: Any, where: str) -> tuple[str, list[Json]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise invalid_type(f"{where}.content", "a string or an array of blocks", content)
    texts: list[str] = []
    images: list[Json] = []
    for k, block in enumerate(content):
        at = f"{where}.content.{k}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_text_of(block, at))
        elif kind == "image":
            images.append(_image_part(block, at))
        else:
            raise _unknown_block(kind, at, "'text' and 'image' in tool results")
    return "\n".join(texts), images


def _assistant_blocks(blocks: list[Any], where: str) -> Json:
    texts: list[str] = []
    calls: list[Json] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        if not isinstance(block, dict):
            raise invalid_type(at, "an object", block)
        kind = block.get("type")
        if kind == "text":
            texts.append(_text_of(block, at))
        elif kind == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str):
                raise missing(f"{at}.id")
            if not isinstance(name, str):
                raise missing(f"{at}.name")
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _unknown_block(kind, at, "'text', 'tool_use' and 'thinking' in assistant turns")
    message: Json = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _tools_to_chat(tools: Any) -> list[Json] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    out: list[Json] = []
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise invalid_type(where, "an object", tool)
        if tool.get("type") not in (None, "custom"):
            raise RequestValidationError(
                f"{where}.type: Anthropic-defined tool {tool.get('type')!r} is not supported "
                "by this gateway; define it as a custom tool with an input_schema.",
                param=f"{where}.type",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise missing(f"{where}.name")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise missing(f"{where}.input_schema")
        function: Json = {"name": name, "parameters": schema}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out or None


def _tool_choice_to_chat(
    choice: Any, tools: list[Json] | None
) -> tuple[str | Json | None, bool | None]:
    if choice is None:
        return None, None
    if not isinstance(choice, dict):
        raise invalid_type("tool_choice", "an object", choice)
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool":
        name = choice.get("name")
        if not any(tool["function"]["name"] == name for tool in tools or ()):
            raise RequestValidationError(
                f"tool_choice.name: no tool named {name!r} is in 'tools'.",
                param="tool_choice.name",
            )
        return {"type": "function", "function": {"name": name}}, parallel
    raise RequestValidationError(
        "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'.",
        param="tool_choice.type",
    )


# ---------------------------------------------------------------- rendering


def anthropic_usage(usage: Usage) -> Json:
    """Anthropic counts cache reads apart from ``input_tokens``; OpenAI counts them in."""
    return {
        "input_tokens": usage.input_tokens - usage.cached_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def stop_reason(
    finish_reason: str | None, matched_stop: Any, request: ChatRequest
) -> tuple[str, str | None]:
    """``(stop_reason, stop_sequence)`` for a chat-completions ``finish_reason``.

    OpenAI does not say which stop sequence matched; vLLM does (``choice.stop_reason``), and
    so does the Anthropic-provider translation, so ``stop_sequence`` is filled when known.
    """
    stops = request.stop or ()
    if finish_reason == "stop" and isinstance(matched_stop, str) and matched_stop in stops:
        return "stop_sequence", matched_stop
    return STOP_REASONS.get(finish_reason or "stop", "end_turn"), None


def tool_input(arguments: str) -> Json:
    """Tool-call ``arguments`` (a JSON string) as a ``tool_use`` block's ``input`` object."""
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_value": value}


def message_id(upstream_id: Any) -> str:
    if isinstance(upstream_id, str) and upstream_id:
        return "msg_" + upstream_id.removeprefix("chatcmpl-")
    return new_id("msg_")


def render_anthropic_message(upstream: Json, request: ChatRequest) -> Json:
    """An upstream ``chat.completion`` as an Anthropic ``message`` object."""
    choices = upstream.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[Json] = []
    text = message_text(message.get("content")) or message.get("refusal") or ""
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_id("toolu_"),
                "name": function.get("name") or "",
                "input": tool_input(function.get("arguments") or ""),
            }
        )
    reason, sequence = stop_reason(choice.get("finish_reason"), choice.get("stop_reason"), request)
    return {
        "id": message_id(upstream.get("id")),
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": anthropic_usage(Usage.from_openai(upstream.get("usage"))),
    }


class AnthropicMessagesStream(StreamTranslator):
    """Upstream chunks as Anthropic's event stream.

    ``message_start`` and a ``ping`` open it; text and each tool call are content blocks
    (``content_block_start`` / ``_delta`` / ``_stop``, with ``text_delta`` and
    ``input_json_delta``); ``message_delta`` carries the stop reason and the usage, which
    upstreams report only at the end, and ``message_stop`` closes it.
    """

    def __init__(self, request: ChatRequest) -> None:
        super().__init__(request)
        self.message_id = new_id("msg_")
        self._started = False
        self._blocks = 0
        self._open: int | None = None  # index of the open content block
        self._open_is_text = False
        self._tool_blocks: dict[int, int] = {}  # upstream tool-call index -> block index

    def start(self) -> bytes:
        """``message_start`` and ``ping``; sent once, before any content."""
        if self._started:
            return b""
        self._started = True
        message: Json = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return encode_event("message_start", {"type": "message_start", "message": message}) + (
            encode_event("ping", {"type": "ping"})
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open, None
        return encode_event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _open_block(self, block: Json, is_text: bool) -> tuple[int, bytes]:
        out = self._close()
        index = self._blocks
        self._blocks += 1
        self._open, self._open_is_text = index, is_text
        return index, out + encode_event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )

    def feed(self, chunk: Json) -> bytes:
        self.accumulator.add(chunk)
        out = [self.start()] if not self._started else []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if text:
                if self._open is None or not self._open_is_text:
                    out.append(self._open_block({"type": "text", "text": ""}, True)[1])
                out.append(
                    encode_event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": self._open,
                            "delta": {"type": "text_delta", "text": text},
                        },
                    )
                )
            for call in delta.get("tool_calls") or ():
                out.append(self._tool_delta(call))
        return b"".join(out)

    def _tool_delta(self, call: Json) -> bytes:
        position = call.get("index", 0)
        function = call.get("function") or {}
        out = b""
        index = self._tool_blocks.get(position)
        if index is None:
            block: Json = {
                "type": "tool_use",
                "id": call.get("id") or new_id("toolu_"),
                "name": function.get("name") or "",
                "input": {},
            }
            index, out = self._open_block(block, False)
            self._tool_blocks[position] = index
        arguments = function.get("arguments")
        if arguments:
            # Upstreams stream tool calls one after another; should one interleave, its
            # deltas still carry their own block index, which the SDKs accumulate by.
            out += encode_event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments},
                },
            )
        return out

    def finish(self) -> bytes:
        if self.finished:
            return b""
        self.finished = True
        acc = self.accumulator
        reason, sequence = stop_reason(acc.finish_reason, acc.matched_stop, self.request)
        usage = anthropic_usage(acc.usage)
        return (
            self.start()
            + self._close()
            + encode_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": sequence},
                    "usage": usage,
                },
            )
            + encode_event("message_stop", {"type": "message_stop"})
        )

    def error(self, error: BastionError) -> bytes:
        self.finished = True
        return encode_event("error", anthropic_error_body(error))
