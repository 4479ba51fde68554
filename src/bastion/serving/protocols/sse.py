"""Server-sent events: an incremental parser for upstream bytes and the encoders for clients.

The parser follows the WHATWG event-stream rules that matter for LLM streams: lines end in
``\\n``, ``\\r\\n`` or ``\\r``; a blank line dispatches the event; ``data`` lines are joined
with ``\\n``; lines starting with ``:`` are comments (keep-alives); one space after the colon
is dropped. It is fed whatever byte chunks the network delivers, so a line may be split
anywhere, even between ``\\r`` and ``\\n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from bastion.errors import UpstreamError
from bastion.serving.protocols.chat import Json

DONE = b"[DONE]"


@dataclass(slots=True, frozen=True)
class SSEEvent:
    """One dispatched event: its ``event:`` name (if any) and its joined ``data:`` bytes."""

    data: bytes
    event: str | None = None

    def json(self) -> Any:
        return orjson.loads(self.data)


class SSEParser:
    """Turns a byte stream into :class:`SSEEvent` objects, however the bytes are chunked.

    >>> parser = SSEParser()
    >>> parser.feed(b'data: {"a"') + parser.feed(b': 1}\\n\\ndata: [DONE]\\n\\n')
    [SSEEvent(data=b'{"a": 1}', event=None), SSEEvent(data=b'[DONE]', event=None)]
    """

    __slots__ = ("_buffer", "_data", "_event", "_skip_lf")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._event: str | None = None
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by ``chunk`` (possibly none)."""
        if self._skip_lf:
            # The previous chunk ended in "\r": a "\n" here is the rest of that "\r\n".
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            self._skip_lf = buffer.endswith(b"\r")
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        return self._lines(lines) if lines else []

    def flush(self) -> list[SSEEvent]:
        """Events left when the stream ends without a final blank line."""
        lines = [self._buffer] if self._buffer else []
        self._buffer = b""
        lines.append(b"")
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(SSEEvent(b"\n".join(self._data), self._event))
                    self._data = []
                self._event = None
                continue
            if line[0] == 0x3A:  # ":" comment / keep-alive
                continue
            name, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value.decode()
        return events


class UpstreamChunkDecoder:
    """Decodes an upstream OpenAI chat-completions SSE byte stream into chunk dicts.

    ``done`` turns true at ``data: [DONE]``; events after it are ignored. An upstream that
    reports an error inside the stream (``data: {"error": {...}}``) raises
    :class:`~bastion.errors.UpstreamError` with its message.
    """

    __slots__ = ("_parser", "done")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self.done = False

    def feed(self, chunk: bytes) -> list[Json]:
        return self._decode(self._parser.feed(chunk))

    def flush(self) -> list[Json]:
        return self._decode(self._parser.flush())

    def _decode(self, events: list[SSEEvent]) -> list[Json]:
        chunks: list[Json] = []
        for event in events:
            if self.done:
                break
            if event.data == DONE:
                self.done = True
                break
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise UpstreamError(
                    f"The upstream sent a stream event that is not JSON: {event.data[:200]!r}"
                ) from None
            if not isinstance(data, dict):
                raise UpstreamError("The upstream sent a stream event that is not a JSON object.")
            if "error" in data and "choices" not in data:
                raise UpstreamError(f"The upstream failed mid-stream: {_error_message(data)}")
            chunks.append(data)
        return chunks


def _error_message(data: Json) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def encode_data(data: Json) -> bytes:
    """``data: {json}\\n\\n``: an OpenAI chat-completions stream event."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


def encode_event(event: str, data: Json) -> bytes:
    """``event: name\\ndata: {json}\\n\\n``: a Responses or Anthropic stream event."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


DONE_EVENT = b"data: [DONE]\n\n"
