"""The gateway's HTTP/1.1 upstream client against real sockets: small asyncio servers on
127.0.0.1 that answer in each of the ways an upstream can (keep-alive, chunked, until-close,
gzip, TLS, slow, broken)."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bastion.serving.gateway.http1 import ConnectionFailed, Http1Pool, Url

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0].encode(), headers, body


def reply(body: bytes, *extra: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Server:
    """Accepts connections on 127.0.0.1 and runs ``handler`` on each; counts connections."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl = ssl_context
        self.connections = 0
        self.requests: list[tuple[bytes, dict[str, str], bytes]] = []
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def url(self, path: str = "/v1/chat/completions") -> Url:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        scheme = "https" if self.ssl else "http"
        return Url.parse(f"{scheme}://127.0.0.1:{port}{path}")


def keep_alive_server(server_box: list[Server], body: bytes = b'{"ok":true}') -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await read_request(reader)
            server_box[0].requests.append(request)
            writer.write(reply(body, "content-type: application/json"))
            await writer.drain()

    return handler


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_keep_alive_reuses_one_connection_and_sends_the_request_as_given() -> None:
    async def main() -> None:
        box: list[Server] = []
        async with Server(keep_alive_server(box)) as server:
            box.append(server)
            pool = Http1Pool()
            url = server.url("/v1/chat/completions?api-version=1")
            for n in range(5):
                response = await pool.request(
                    url, b'{"n":%d}' % n, {"authorization": "Bearer k"}, timeout=5
                )
                assert (response.status, response.body) == (200, b'{"ok":true}')
                assert response.headers["content-type"] == "application/json"
            await pool.aclose()
        assert server.connections == 1
        line, headers, body = server.requests[4]
        assert line == b"POST /v1/chat/completions?api-version=1 HTTP/1.1"
        assert headers["host"] == url.host_header
        assert headers["authorization"] == "Bearer k"
        assert body == b'{"n":4}'

    run(main())


def test_concurrent_requests_get_their_own_answers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, _, body = await read_request(reader)
            await asyncio.sleep(0.01)
            writer.write(reply(body))
            await writer.drain()

    async def main() -> None:
        async with Server(handler) as server:
            pool = Http1Pool(max_per_origin=4)
            bodies = [b"%d" % n for n in range(20)]
            answers = await asyncio.gather(
                *(pool.request(server.url(), b, {}, timeout=5) for b in bodies)
            )
            await pool.aclose()
        assert [a.body for a in answers] == bodies
        assert server.connections <= 4

    run(main())


def test_a_keep_alive_connection_the_server_closed_is_replaced_transparently() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply(b"first"))  # then close although keep-alive was offered
        await writer.drain()

    async def main() -> None:
        async with Server(handler) as server:
            pool = Http1Pool()
            assert (await pool.request(server.url(), b"", {}, timeout=5)).body == b"first"
            await asyncio.sleep(0.05)  # the close reaches the client
            assert (await pool.request(server.url(), b"", {}, timeout=5)).body == b"first"
            await pool.aclose()
        assert server.connections == 2

    run(main())


def test_a_reused_connection_closed_without_an_answer_is_retried_once_afresh() -> None:
    seen: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(len(seen))
        await read_request(reader)
        writer.write(reply(b"ok"))
        await writer.drain()
        if len(seen) == 1:
            await read_request(reader)  # the second request on this connection: no answer
            writer.transport.abort()

    async def main() -> None:
        async with Server(handler) as server:
            pool = Http1Pool()
            assert (await pool.request(server.url(), b"a", {}, timeout=5)).body == b"ok"
            assert (await pool.request(server.url(), b"b", {}, timeout=5)).body == b"ok"
            await pool.aclose()
        assert server.connections == 2

    run(main())


class _RefusingTransport:
    """A pooled connection's transport in the window uvloop leaves when the peer dies (a
    killed model worker): not closing yet, but its handle is closed and a write raises."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_pooled_connection_whose_write_fails_is_replaced_by_a_fresh_one() -> None:
    box: list[Server] = []

    async def main() -> None:
        async with Server(keep_alive_server(box)) as server:
            box.append(server)
            pool = Http1Pool()
            assert (await pool.request(server.url(), b"a", {}, timeout=5)).status == 200
            ((_, idle),) = pool._idle.items()
            idle[0].transport = _RefusingTransport(idle[0].transport)  # type: ignore[assignment]
            answer = await pool.request(server.url(), b"b", {}, timeout=5)
            assert answer.status == 200 and answer.body == b'{"ok":true}'
            await pool.aclose()
        assert server.connections == 2
        assert [body for _, _, body in server.requests] == [b"a", b"b"]

    run(main())


def test_a_fresh_connection_whose_write_fails_raises_connection_failed() -> None:
    box: list[Server] = []

    async def main() -> None:
        async with Server(keep_alive_server(box)) as server:
            box.append(server)
            pool = Http1Pool()
            connect = pool._connect

            async def refusing(origin: Any) -> Any:
                conn = await connect(origin)
                conn.transport = _RefusingTransport(conn.transport)
                return conn

            pool._connect = refusing  # type: ignore[method-assign]
            with pytest.raises(ConnectionFailed, match="closed the connection"):
                await pool.request(server.url(), b"a", {}, timeout=5)
            await pool.aclose()

    run(main())


def test_chunked_until_close_and_gzip_bodies() -> None:
    payload = b'{"text":"' + b"x" * 5000 + b'"}'

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line, _, _ = await read_request(reader)
            path = line.split()[1]
            if path == b"/chunked":
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                for part in (payload[:10], payload[10:]):
                    writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                writer.write(b"0\r\n\r\n")
            elif path == b"/close":
                writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + payload)
                await writer.drain()
                writer.close()
                return
            else:
                writer.write(reply(gzip.compress(payload), "content-encoding: gzip"))
            await writer.drain()

    async def main() -> None:
        async with Server(handler) as server:
            pool = Http1Pool()
            for path in ("/chunked", "/close", "/gzip", "/chunked"):
                response = await pool.request(server.url(path), b"", {}, timeout=5)
                assert response.body == payload, path
            await pool.aclose()
        assert server.connections == 2  # a new one after the server closed its first

    run(main())


def test_error_statuses_come_back_as_responses() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(reply(b'{"error":"slow down"}', status="429 Too Many Requests"))
            await writer.drain()

    async def main() -> None:
        async with Server(handler) as server:
            pool = Http1Pool()
            response = await pool.request(server.url(), b"", {}, timeout=5)
            await pool.aclose()
        assert (response.status, response.body) == (429, b'{"error":"slow down"}')

    run(main())


def test_timeout_and_the_slow_connection_is_not_reused() -> None:
    calls: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            calls.append(1)
            if len(calls) == 1:
                await asyncio.sleep(1.0)  # answers after the client gave up
            writer.write(reply(b"late" if len(calls) == 1 else b"fresh"))
            await writer.drain()

    async def main() -> None:
        async with Server(handler) as server:
            pool = Http1Pool()
            with pytest.raises(TimeoutError):
                await pool.request(server.url(), b"", {}, timeout=0.1)
            response = await pool.request(server.url(), b"", {}, timeout=5)
            await pool.aclose()
        assert response.body == b"fresh"
        assert server.connections == 2

    run(main())


def test_refused_reset_and_malformed_upstreams_raise_connection_failed() -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, _, _ = await read_request(reader)
        if line.split()[1] == b"/garbage":
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.transport.abort()

    async def main() -> None:
        pool = Http1Pool()
        with pytest.raises(ConnectionFailed, match="Cannot connect"):
            await pool.request(Url.parse("http://127.0.0.1:9/x"), b"", {}, timeout=5)
        async with Server(broken) as server:
            with pytest.raises(ConnectionFailed, match="closed the connection"):
                await pool.request(server.url("/cut"), b"", {}, timeout=5)
            with pytest.raises(ConnectionFailed, match="malformed"):
                await pool.request(server.url("/garbage"), b"", {}, timeout=5)
        await pool.aclose()

    run(main())


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async def main() -> None:
        box: list[Server] = []
        async with Server(keep_alive_server(box)) as server:
            box.append(server)
            pool = Http1Pool()
            with pytest.raises(ValueError, match="line break"):
                await pool.request(server.url(), b"", {"x-api-key": "k\r\nx-evil: 1"}, timeout=5)
            await pool.aclose()
        assert server.connections == 0

    run(main())


def test_streams_arrive_as_sent_and_an_abandoned_stream_closes_its_connection() -> None:
    release = asyncio.Event

    async def main() -> None:
        go = release()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                line, _, _ = await read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                writer.write(b"6\r\ndata 1\r\n")
                await writer.drain()
                if line.split()[1] == b"/abandon":
                    await asyncio.sleep(5)
                await go.wait()
                writer.write(b"6\r\ndata 2\r\n0\r\n\r\n")
                await writer.drain()

        async with Server(handler) as server:
            pool = Http1Pool()
            head, chunks = await pool.stream(server.url("/sse"), b"", {}, timeout=5)
            assert head.status == 200
            first = await chunks.__anext__()
            assert first == b"data 1"  # before the server sent the rest
            go.set()
            assert [c async for c in chunks] == [b"data 2"]
            head, chunks = await pool.stream(server.url("/sse"), b"", {}, timeout=5)
            assert b"".join([c async for c in chunks]) == b"data 1data 2"
            assert server.connections == 1  # a finished stream's connection is reused

            head, chunks = await pool.stream(server.url("/abandon"), b"", {}, timeout=5)
            assert await chunks.__anext__() == b"data 1"
            await chunks.aclose()  # type: ignore[attr-defined]
            head, chunks = await pool.stream(server.url("/sse"), b"", {}, timeout=5)
            assert b"".join([c async for c in chunks]) == b"data 1data 2"
            await pool.aclose()
        assert server.connections == 2

    run(main())


def test_a_stream_that_stalls_times_out_per_read() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(2)

    async def main() -> None:
        async with Server(handler) as server:
            pool = Http1Pool()
            _, chunks = await pool.stream(server.url(), b"", {}, timeout=0.2)
            assert await chunks.__anext__() == b"abc"
            with pytest.raises(TimeoutError):
                await chunks.__anext__()
            await pool.aclose()

    run(main())


def _self_signed(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def test_https_upstreams_are_verified(tmp_path: Path) -> None:
    server_ctx, client_ctx = _self_signed(tmp_path)

    async def main() -> None:
        box: list[Server] = []
        async with Server(keep_alive_server(box), ssl_context=server_ctx) as server:
            box.append(server)
            trusted = Http1Pool(ssl_context=client_ctx)
            response = await trusted.request(server.url(), b"{}", {}, timeout=5)
            assert response.body == b'{"ok":true}'
            await trusted.aclose()
            untrusted = Http1Pool()  # the system's CAs: the self-signed cert is refused
            with pytest.raises(ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusted.request(server.url(), b"{}", {}, timeout=5)
            await untrusted.aclose()

    run(main())


def test_urls_parse_to_origin_target_and_host_header() -> None:
    url = Url.parse("https://api.example.com/v1/messages")
    assert (url.origin.port, url.target, url.host_header) == (
        443,
        "/v1/messages",
        "api.example.com",
    )
    url = Url.parse("http://[::1]:8080")
    assert (url.origin.host, url.target, url.host_header) == ("::1", "/", "[::1]:8080")
    with pytest.raises(ValueError):
        Url.parse("ftp://example.com/")
