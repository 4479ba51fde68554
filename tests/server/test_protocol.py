"""The server's HTTP protocol: uvicorn's, with each response leaving in one write."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bastion.server.protocol import MAX_PENDING, GatheringTransport, HttpProtocol

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """/ answers 'hello' (content-length); /stream three chunks with a pause between them."""
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/big":
        body = b"x" * (3 * MAX_PENDING)
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


class RecordingTransport(asyncio.Transport):
    """What the socket would have been asked to send, one entry per write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.eof = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def _serve_one(protocol_class: type[asyncio.Protocol], request: bytes) -> RecordingTransport:
    """Drive uvicorn's real protocol over a recording transport through one request."""

    async def go() -> RecordingTransport:
        config = uvicorn.Config(app, log_level="warning", server_header=False, date_header=False)
        config.load()
        transport = RecordingTransport()
        protocol = protocol_class(  # type: ignore[call-arg]
            config=config, server_state=ServerState(), app_state={}
        )
        protocol.connection_made(transport)
        protocol.data_received(request)
        for _ in range(200):
            await asyncio.sleep(0.005)
            if any(w.endswith(b"0\r\n\r\n") or w.endswith(b"hello") for w in transport.writes):
                break
        await asyncio.sleep(0.02)
        protocol.connection_lost(None)
        return transport

    return asyncio.run(go())


GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def test_uvicorn_alone_sends_a_response_in_two_writes() -> None:
    """What this module is for: uvicorn writes the head and the body separately."""
    writes = _serve_one(HttpToolsProtocol, GET).writes
    assert len(writes) == 2
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[1] == b"hello"


def test_a_response_leaves_in_one_write_with_the_same_bytes() -> None:
    alone = b"".join(_serve_one(HttpToolsProtocol, GET).writes)
    writes = _serve_one(HttpProtocol, GET).writes
    assert writes == [alone]


def test_a_streamed_response_is_sent_as_it_is_produced() -> None:
    writes = _serve_one(HttpProtocol, b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n").writes
    # the head leaves with the first chunk; each later chunk leaves in the loop turn it is
    # sent in, without waiting for the rest of the response
    assert len(writes) == 4
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"4\r\none,\r\n")
    assert writes[1:] == [b"4\r\ntwo,\r\n", b"5\r\nthree\r\n", b"0\r\n\r\n"]


def test_connection_close_sends_what_was_gathered_before_closing() -> None:
    request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    transport = _serve_one(HttpProtocol, request)
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"hello")
    assert transport.closed


def test_gathering_transport_bounds_what_it_holds() -> None:
    async def go() -> None:
        inner = RecordingTransport()
        gathering = GatheringTransport(inner, asyncio.get_running_loop())
        gathering.write(b"a")
        gathering.write(memoryview(b"b"))
        assert inner.writes == [] and gathering.get_write_buffer_size() == 2
        gathering.write(b"c" * MAX_PENDING)  # over the bound: written at once
        assert inner.writes == [b"ab" + b"c" * MAX_PENDING]
        gathering.write(b"d")
        await asyncio.sleep(0)  # the loop's next turn
        await asyncio.sleep(0)
        assert inner.writes[-1] == b"d"
        gathering.write(b"e")
        gathering.write_eof()
        assert inner.writes[-1] == b"e" and inner.eof
        gathering.write(b"f")
        gathering.abort()  # an abort discards, like the socket's own buffer
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert inner.writes[-1] == b"e" and inner.closed
        gathering.write(b"")
        assert gathering.get_write_buffer_size() == 0

    asyncio.run(go())


@pytest.fixture
def server() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", http=HttpProtocol, lifespan="off")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if instance.started:
            break
        threading.Event().wait(0.01)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)
    sock.close()


def test_over_a_real_socket_keep_alive_streaming_and_large_bodies(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        for _ in range(3):  # one keep-alive connection, several requests
            assert client.get("/").text == "hello"
        assert client.get("/stream").text == "one,two,three"
        assert client.get("/big").content == b"x" * (3 * MAX_PENDING)
        assert client.head("/").headers["content-length"] == "5"
        assert client.get("/", headers={"connection": "close"}).text == "hello"
