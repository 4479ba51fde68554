"""What every streaming translator shares: the accumulator and the translator interface.

Upstream streams are always OpenAI chat-completion chunks (an Anthropic upstream is first
turned into such chunks by ``anthropic_provider.AnthropicUpstreamStream``).
A translator is fed those chunks one by one and returns the bytes to write to the client.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

from bastion.errors import BastionError
from bastion.serving.protocols.chat import ChatRequest, Json, Usage


class StreamAccumulator:
    """Assembles the whole completion from upstream chunks, for logging once a stream ends.

    >>> acc = StreamAccumulator()
    >>> acc.add({"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hel"}}]})
    >>> acc.add({"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo"},
    ...                                   "finish_reason": "stop"}]})
    >>> acc.text, acc.finish_reason
    ('Hello', 'stop')
    """

    __slots__ = (
        "_deltas",
        "_refusal",
        "_text",
        "created",
        "finish_reason",
        "id",
        "matched_stop",
        "model",
        "prompt_chars",
        "tool_calls",
        "usage_json",
    )

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.created: int | None = None
        self._text: list[str] = []
        self._refusal: list[str] = []
        #: Tool calls by their stream index: ``{"id", "type", "function": {"name", "arguments"}}``.
        self.tool_calls: dict[int, Json] = {}
        self.finish_reason: str | None = None
        #: The stop sequence that ended generation, where the upstream says (vLLM does).
        self.matched_stop: str | None = None
        self.usage_json: Json | None = None
        #: Characters of the prompt, for estimating usage when the upstream reports none.
        self.prompt_chars = 0
        self._deltas = 0

    def add(self, chunk: Json) -> None:
        if self.id is None:
            self.id = chunk.get("id")
            self.model = chunk.get("model")
            self.created = chunk.get("created")
        usage = chunk.get("usage")
        if usage:
            self.usage_json = usage
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self._text.append(content)
                self._deltas += 1
            refusal = delta.get("refusal")
            if refusal:
                self._refusal.append(refusal)
            for call in delta.get("tool_calls") or ():
                self._add_tool_call(call)
                self._deltas += 1
            finish = choice.get("finish_reason")
            if finish:
                self.finish_reason = finish
                stop = choice.get("stop_reason")
                if isinstance(stop, str):
                    self.matched_stop = stop

    def _add_tool_call(self, call: Json) -> None:
        index = call.get("index", len(self.tool_calls))
        function = call.get("function") or {}
        known = self.tool_calls.get(index)
        if known is None:
            self.tool_calls[index] = {
                "id": call.get("id") or f"call_{index}",
                "type": "function",
                "function": {
                    "name": function.get("name") or "",
                    "arguments": function.get("arguments") or "",
                },
            }
            return
        if call.get("id"):
            known["id"] = call["id"]
        if function.get("name") and not known["function"]["name"]:
            known["function"]["name"] = function["name"]
        if function.get("arguments"):
            known["function"]["arguments"] += function["arguments"]

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def empty(self) -> bool:
        """No content, refusal or tool call, and no finish reason: the stream said nothing."""
        return not (self._text or self._refusal or self.tool_calls or self.finish_reason)

    @property
    def usage(self) -> Usage:
        """The upstream's usage, or an estimate when it sent none (llama.cpp's server ignores
        ``stream_options.include_usage``): one output token per streamed delta, as servers
        stream token by token, and a prompt of about four characters per token."""
        if self.usage_json:
            return Usage.from_openai(self.usage_json)
        if not self._deltas:
            return Usage()
        return Usage(input_tokens=-(-self.prompt_chars // 4), output_tokens=self._deltas)

    def completion(self, model: str | None = None) -> Json:
        """The stream as one OpenAI ``chat.completion`` object."""
        message: Json = {"role": "assistant", "content": self.text if self._text else None}
        if self._refusal:
            message["refusal"] = "".join(self._refusal)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        completion: Json = {
            "id": self.id or "chatcmpl-stream",
            "object": "chat.completion",
            "created": self.created if self.created is not None else int(time.time()),
            "model": model or self.model or "",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": self.finish_reason or "stop",
                    "logprobs": None,
                }
            ],
        }
        if self.usage_json is not None:
            completion["usage"] = self.usage_json
        return completion


def completion_chunks(reply: Json) -> list[Json]:
    """A whole ``chat.completion`` as the ``chat.completion.chunk`` sequence a stream of it
    would have been (the inverse of :class:`StreamAccumulator`): per choice a delta with role,
    content and tool calls, then its finish, then a usage chunk."""
    base = {
        "id": reply.get("id", "chatcmpl-bastion"),
        "object": "chat.completion.chunk",
        "created": reply.get("created", 0),
        "model": reply.get("model", ""),
    }
    chunks: list[Json] = []
    for index, choice in enumerate(reply.get("choices") or []):
        message = choice.get("message") or {}
        delta: Json = {"role": message.get("role", "assistant"), "content": message.get("content")}
        calls = message.get("tool_calls")
        if calls:
            delta["tool_calls"] = [{**call, "index": n} for n, call in enumerate(calls)]
        choice_index = choice.get("index", index)
        chunks.append({**base, "choices": [{"index": choice_index, "delta": delta}]})
        chunks.append(
            {
                **base,
                "choices": [
                    {
                        "index": choice_index,
                        "delta": {},
                        "finish_reason": choice.get("finish_reason") or "stop",
                    }
                ],
            }
        )
    if reply.get("usage"):
        chunks.append({**base, "choices": [], "usage": reply["usage"]})
    return chunks


class StreamTranslator(ABC):
    """Turns upstream chat-completion chunks into one client API's SSE bytes.

    Call :meth:`feed` for each upstream chunk, :meth:`finish` once the upstream stream ends
    (``[DONE]`` or end of body), or :meth:`error` if it fails; each returns the bytes to send
    (possibly empty). :attr:`accumulator` holds the whole completion for logging.
    """

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self.model = request.model
        self.accumulator = StreamAccumulator()
        self.accumulator.prompt_chars = _prompt_chars(request)
        self.finished = False

    @abstractmethod
    def feed(self, chunk: Json) -> bytes:
        """Client bytes for one upstream chunk."""

    @abstractmethod
    def finish(self) -> bytes:
        """Client bytes that end the stream: closing events and the final usage."""

    @abstractmethod
    def error(self, error: BastionError) -> bytes:
        """Client bytes that report ``error`` in the middle of a stream and end it."""

    @property
    def usage(self) -> Usage:
        return self.accumulator.usage

    def completion(self) -> Json:
        """The whole streamed completion as one OpenAI ``chat.completion`` (for logs)."""
        return self.accumulator.completion(self.model)


def _prompt_chars(request: ChatRequest) -> int:
    total = 0
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(
                len(str(part.get("text", ""))) for part in content if isinstance(part, dict)
            )
    return total
