"""A lean HTTP/1.1 client for the gateway's upstream calls.

Keep-alive connections per origin, each an ``asyncio.Protocol`` driving httptools' response
parser (llhttp, Node.js's parser). It does what an upstream call needs and nothing more: one
request per connection at a time, ``Content-Length`` / chunked / read-until-close bodies, gzip
and deflate, TLS through asyncio, a deadline per response and per streamed read, back-pressure
for streams, and one retry on a fresh connection when a reused keep-alive connection turns out
to have been closed by the server before it answered.

Why not aiohttp or httpx: each request through them builds several objects (request, response,
timers, payload wrappers, stream readers); on a loopback round trip that was ~250 µs more per
call than this client, on a gateway whose whole overhead budget is 1 ms
(``benchmarks/gateway.py``, ``docs/benchmarks.md``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

import httptools

_PAUSE_BYTES = 1 << 20  # a stream's unread backlog that pauses reading from the socket
_USER_AGENT = "bastion-gateway"


class ConnectionFailed(Exception):
    """The upstream could not be reached, or the connection broke before a full answer."""


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


@dataclass(frozen=True)
class Url:
    """A parsed upstream URL: where to connect and what to put on the request line."""

    origin: Origin
    target: str
    host_header: str

    @classmethod
    def parse(cls, url: str) -> Url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Not an http(s) URL: {url!r}")
        default = 443 if parts.scheme == "https" else 80
        port = parts.port or default
        host = parts.hostname
        host_text = f"[{host}]" if ":" in host else host
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = host_text if port == default else f"{host_text}:{port}"
        return cls(Origin(parts.scheme, host, port), target, host_header)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def _decoder(encoding: str | None) -> Any:
    if not encoding or encoding == "identity":
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise ConnectionFailed(f"The upstream answered with an unsupported encoding {encoding!r}.")


class _Connection(asyncio.Protocol):
    """One upstream connection; parses the response to the request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.lost = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.error: Exception | None = None
        self._body: list[bytes] = []
        self._backlog = 0
        self._paused = False
        self._streaming = False
        self._waiter: asyncio.Future[None] | None = None
        self._length_known = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionFailed(f"The upstream sent a malformed HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.head_done and not self.complete and not self._length_known:
            self._finished()  # a body delimited by the connection closing
            return
        if not self.complete:
            reason = f": {exc}" if exc else ""
            self._fail(ConnectionFailed(f"The upstream closed the connection{reason}."))

    # -- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.head_done = True
        self._length_known = (
            "content-length" in self.headers
            or "chunked" in self.headers.get("transfer-encoding", "")
            or self.status in (204, 304)
        )
        if self._streaming:
            self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        if self._streaming:
            self._backlog += len(body)
            if self._backlog > _PAUSE_BYTES and not self._paused and self.transport:
                self._paused = True
                self.transport.pause_reading()
            self._wake()

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        self._finished()

    # -- used by the pool -------------------------------------------------------------------

    def _finished(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.lost and self.error is None

    def send(self, data: bytes, *, streaming: bool) -> None:
        self._reset()
        self._streaming = streaming
        assert self.transport is not None
        try:
            self.transport.write(data)
        except (RuntimeError, OSError) as exc:
            # uvloop may close the handle of a connection whose peer died (a killed worker)
            # before the protocol hears of it: the pooled connection looked alive, and the
            # write raises. Nothing was sent: fail it like a connection the server closed.
            self.connection_lost(exc)

    async def wait(self, deadline: float) -> None:
        """Until something new arrives (or the response ends, or fails); TimeoutError at
        ``deadline`` (a ``loop.time()`` instant)."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def take_body(self) -> bytes:
        chunks, self._body = self._body, []
        self._backlog = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Http1Pool:
    """Keep-alive HTTP/1.1 connections to any number of origins, for one event loop.

    >>> pool = Http1Pool()
    >>> reply = await pool.request(Url.parse("http://127.0.0.1:9100/v1/chat/completions"),
    ...                            body, {"content-type": "application/json"}, timeout=60)
    """

    def __init__(
        self,
        *,
        max_per_origin: int = 512,
        idle_timeout: float = 60.0,
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        resolver: Callable[[str, int], Awaitable[list[str]]] | None = None,
    ) -> None:
        """``resolver(host, port)``: the addresses a new connection may use (it raises to
        refuse); the pool then connects to exactly those, so what was checked is what is
        reached. None: the operating system resolves and connects as usual."""
        self._resolver = resolver
        self._max = max_per_origin
        self._idle_timeout = idle_timeout
        self._connect_timeout = connect_timeout
        self._ssl = ssl_context
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._slots: dict[Origin, asyncio.Semaphore] = {}
        self._open: set[_Connection] = set()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = origin.scheme == "https"
        addresses = [origin.host]
        if self._resolver is not None:
            addresses = await self._resolver(origin.host, origin.port)
        try:
            _, conn = await asyncio.wait_for(
                self._open_first(loop, addresses, origin, tls), self._connect_timeout
            )
        except TimeoutError:
            raise ConnectionFailed(
                f"Connecting to {origin.host}:{origin.port} timed out after "
                f"{self._connect_timeout:g} s."
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionFailed(
                f"Cannot connect to {origin.host}:{origin.port}: {exc}"
            ) from None
        self._open.add(conn)
        return conn

    async def _open_first(
        self,
        loop: asyncio.AbstractEventLoop,
        addresses: list[str],
        origin: Origin,
        tls: bool,
    ) -> tuple[asyncio.BaseTransport, _Connection]:
        error: OSError | None = None
        for address in addresses:
            try:
                return await loop.create_connection(
                    lambda: _Connection(loop),
                    address,
                    origin.port,
                    ssl=self._ssl_context() if tls else None,
                    server_hostname=origin.host if tls else None,
                )
            except OSError as exc:
                error = exc
        raise error or OSError(f"no address for {origin.host}")

    def _reuse(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            transport = conn.transport
            closed = conn.lost or transport is None or transport.is_closing()
            if closed or now - conn.idle_since > self._idle_timeout:
                self._discard(conn)
                continue
            return conn
        return None

    def _release(self, origin: Origin, conn: _Connection) -> None:
        if conn.reusable:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(origin, deque()).append(conn)
        else:
            self._discard(conn)

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)

    def _head(self, url: Url, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [
            f"POST {url.target} HTTP/1.1\r\nhost: {url.host_header}\r\n"
            f"content-length: {len(body)}\r\naccept-encoding: identity\r\n"
            f"user-agent: {_USER_AGENT}\r\n"
        ]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"The upstream header {name!r} contains a line break.")
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1") + body

    async def _start(
        self, url: Url, data: bytes, *, streaming: bool, deadline: float
    ) -> _Connection:
        """Send the request; return the connection once the response head has arrived
        (``streaming``) or the whole response has."""
        origin = url.origin
        for _ in range(2):
            conn = self._reuse(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin)
            conn.send(data, streaming=streaming)
            try:
                while conn.error is None and not (conn.complete or (streaming and conn.head_done)):
                    await conn.wait(deadline)
            except BaseException:
                self._discard(conn)
                raise
            if conn.error is not None:
                self._discard(conn)
                if reused and not conn.got_bytes:
                    continue  # the server had closed this idle connection: once more, afresh
                raise conn.error
            return conn
        raise ConnectionFailed("The upstream closed the connection.")

    async def request(
        self, url: Url, body: bytes, headers: dict[str, str], *, timeout: float
    ) -> Response:
        """POST ``body`` and read the whole answer; TimeoutError after ``timeout`` seconds."""
        data = self._head(url, body, headers)
        slot = self._slot(url.origin)
        await slot.acquire()
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            conn = await self._start(url, data, streaming=False, deadline=deadline)
            status, response_headers = conn.status, conn.headers
            payload = conn.take_body()
            self._release(url.origin, conn)
        finally:
            slot.release()
        decoder = _decoder(response_headers.get("content-encoding"))
        if decoder is not None:
            try:
                payload = decoder.decompress(payload) + decoder.flush()
            except zlib.error as exc:
                raise ConnectionFailed(
                    f"The upstream's compressed body is corrupt: {exc}"
                ) from None
        return Response(status, response_headers, payload)

    async def stream(
        self, url: Url, body: bytes, headers: dict[str, str], *, timeout: float
    ) -> tuple[Response, AsyncGenerator[bytes, None]]:
        """POST ``body``; return the response head (body empty) and an iterator over the body
        as it arrives. ``timeout`` bounds the wait for the head and for each later read.
        Close the iterator (``aclose``) if you stop early."""
        data = self._head(url, body, headers)
        slot = self._slot(url.origin)
        await slot.acquire()
        loop = asyncio.get_running_loop()
        try:
            conn = await self._start(url, data, streaming=True, deadline=loop.time() + timeout)
        except BaseException:
            slot.release()
            raise
        head = Response(conn.status, conn.headers, b"")
        return head, self._body_of(url.origin, conn, slot, timeout)

    async def _body_of(
        self, origin: Origin, conn: _Connection, slot: asyncio.Semaphore, timeout: float
    ) -> AsyncGenerator[bytes, None]:
        loop = asyncio.get_running_loop()
        try:
            decoder = _decoder(conn.headers.get("content-encoding"))
            while True:
                chunk = conn.take_body()
                if chunk:
                    yield decoder.decompress(chunk) if decoder is not None else chunk
                if conn.error is not None:
                    raise conn.error
                if conn.complete:
                    if decoder is not None and (tail := decoder.flush()):
                        yield tail
                    break
                await conn.wait(loop.time() + timeout)
        except zlib.error as exc:
            conn.close()
            raise ConnectionFailed(f"The upstream's compressed stream is corrupt: {exc}") from None
        finally:
            self._release(origin, conn)
            slot.release()

    def _slot(self, origin: Origin) -> asyncio.Semaphore:
        slot = self._slots.get(origin)
        if slot is None:
            slot = self._slots[origin] = asyncio.Semaphore(self._max)
        return slot

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
