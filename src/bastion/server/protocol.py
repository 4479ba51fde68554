"""uvicorn's HTTP/1.1 protocol (httptools), with each response sent in one system call.

uvicorn writes a response's status line and headers to the socket as soon as the app sends
``http.response.start``, and the body in a second write when it sends ``http.response.body``:
two ``send`` calls per response. On loopback and in most VMs a ``send`` costs far more than
the copy it does — the kernel runs the receiving side's TCP processing in the sender's call
— and a profile of the gateway at concurrency 64 found socket writes to be the largest share
of a server process's time (``docs/benchmarks.md``).

:class:`HttpProtocol` hands uvicorn a transport that gathers what is written during one turn
of the event loop and passes it on as one write: at the end of the response (uvicorn's
``on_response_complete``), at the loop's next turn for a response still streaming, at once
when more than :data:`MAX_PENDING` bytes are waiting, and before ``close`` / ``write_eof``.
Nothing else changes: the bytes and their order are uvicorn's; flow control still works on the
socket's transport (a producer that never yields is bounded by ``MAX_PENDING``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_PENDING = 64 * 1024
"""Bytes gathered before they are written without waiting for the loop's next turn."""


class GatheringTransport:
    """Wraps an ``asyncio.Transport``: writes made in one turn of the loop leave as one."""

    __slots__ = ("_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        pending = self._pending
        if pending is None:
            self._pending = pending = []
            self._size = 0
            self._loop.call_soon(self.flush)
        pending.append(bytes(data))
        self._size += len(data)
        if self._size > MAX_PENDING:
            self.flush()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Pass what was gathered on to the socket's transport now."""
        pending = self._pending
        if not pending:
            return
        self._pending = None
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = None
        self._size = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, get_extra_info, pause/resume_reading, set_protocol, …)
        # is the socket transport's own.
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`GatheringTransport`; for ``Config(http=…)``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        gathering = GatheringTransport(transport, self.loop)
        super().connection_made(gathering)  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        transport = self.transport
        if isinstance(transport, GatheringTransport):
            transport.flush()
        super().on_response_complete()
