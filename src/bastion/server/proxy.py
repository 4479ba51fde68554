"""The app proxy at ``/apps/<name>/``: sign-in, ``CAN_USE``, identity headers, and streaming
HTTP and WebSocket traffic to the app's loopback port.

Pure ASGI in front of the gateway. What an app receives about its user comes only from here:
every client-supplied ``X-Forwarded-*``, ``Forwarded``, ``X-Real-Ip`` and ``X-Request-Id`` is
dropped, as are the caller's ``Authorization`` and Bastion's own cookies, and the proxy sets
``X-Forwarded-User``, ``-Email``, ``-Preferred-Username``, ``-Host``, ``X-Real-Ip``,
``X-Request-Id`` and — when the app declares ``user_api_scopes`` — ``X-Forwarded-Access-Token``,
a short-lived token for the user, narrowed to those scopes and marked as acting through the
app. The app sees itself at ``/`` (the ``/apps/<name>`` prefix is stripped and sent as
``X-Forwarded-Prefix``), as a Databricks app sees its own host name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bastion.apps import AppRecord, AppsControl, ProcessState
from bastion.clock import now_ms
from bastion.errors import BastionError
from bastion.governance.audit import AuditEvent
from bastion.identity.authn import presented_token
from bastion.identity.model import Caller
from bastion.platform import Platform
from bastion.server.origins import origin_allowed
from bastion.server.pages import message_page
from bastion.server.sessions import CSRF_COOKIE, SESSION_COOKIE, BrowserSessions, cookies_of

logger = logging.getLogger(__name__)

PREFIX = "/apps/"
APP_SCOPE = "apps:read"
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_SPOOFABLE = ("x-forwarded-", "x-real-ip", "x-request-id", "forwarded", "x-bastion-")
_OWN_COOKIES = frozenset({SESSION_COOKIE, CSRF_COOKIE})
_TOKEN_CACHE_SIZE = 10_000


class _Refusal(Exception):
    """An answer the proxy gives instead of the app's."""

    def __init__(
        self,
        status: int,
        title: str,
        text: str,
        *,
        location: str | None = None,
        retry_after: int | None = None,
        code: str = "PERMISSION_DENIED",
    ) -> None:
        super().__init__(text)
        self.status, self.title, self.text = status, title, text
        self.location, self.retry_after, self.code = location, retry_after, code


class AppProxy:
    def __init__(
        self, app: ASGIApp, platform: Platform, apps: AppsControl, sessions: BrowserSessions
    ) -> None:
        self.inner = app
        self.platform = platform
        self.apps = apps
        self.sessions = sessions
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=5.0, read=None, write=None, pool=30.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
            trust_env=False,
            follow_redirects=False,
        )
        self._tokens: dict[tuple[Any, ...], tuple[str, float]] = {}

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not (
            path.startswith(PREFIX) and len(path) > len(PREFIX)
        ):
            await self.inner(scope, receive, send)
            return
        name, _, rest = path[len(PREFIX) :].partition("/")
        headers = _headers(scope)
        request_id = uuid.uuid4().hex
        try:
            if scope["type"] == "http" and not path.startswith(f"{PREFIX}{name}/"):
                query = scope.get("query_string", b"").decode("latin-1")
                raise _Refusal(
                    308,
                    "Moved",
                    "The app lives at its folder.",
                    location=f"{PREFIX}{quote(name)}/" + (f"?{query}" if query else ""),
                )
            record, caller = self._admit(scope, name, headers, request_id)
            port = self._port(record)
        except _Refusal as refusal:
            if scope["type"] == "websocket":
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008, "reason": refusal.title})
            else:
                await _refuse(send, refusal, headers, request_id)
            return
        upstream = self._upstream_headers(scope, headers, record, caller, request_id, name)
        target = "/" + rest
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, port, target, upstream, headers)
        else:
            await self._http(scope, receive, send, port, target, upstream, name, request_id)

    # -- who may reach which app ------------------------------------------------------------

    def _admit(
        self, scope: Scope, name: str, headers: dict[str, str], request_id: str
    ) -> tuple[AppRecord, Caller]:
        record = self.apps.find(name)
        if record is None:
            raise _Refusal(
                404,
                "No such app",
                f"There is no app named '{name}'.",
                code="RESOURCE_DOES_NOT_EXIST",
            )
        caller = self._caller(scope, headers)
        if caller is None:
            if _wants_html(scope, headers):
                raw = scope.get("raw_path") or scope["path"].encode()
                target = raw.decode("latin-1")
                query = scope.get("query_string", b"").decode("latin-1")
                if query:
                    target += "?" + query
                raise _Refusal(
                    302,
                    "Sign in",
                    "Sign in first.",
                    location="/login?next=" + quote(target, safe=""),
                )
            raise _Refusal(
                401,
                "Sign in",
                "Sign in, or send 'Authorization: Bearer <token>'.",
                code="UNAUTHENTICATED",
            )
        if caller.acting_app is not None:
            raise _Refusal(403, "Access denied", "A token forwarded to an app cannot open apps.")
        if self.apps.level(caller, record) is None:
            self._audit_denied(scope, caller, name, request_id)
            raise _Refusal(
                403,
                "Access denied",
                f"{caller.name} may not use the app '{name}' (it needs CAN_USE). Ask its "
                "owner or an admin for access.",
            )
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            if origin is not None and not origin_allowed(
                origin,
                scope.get("scheme", "http"),
                headers,
                self.platform.settings.app_allowed_origins,
            ):
                raise _Refusal(403, "Access denied", "Cross-origin requests to apps are refused.")
        if scope["type"] == "websocket" and not origin_allowed(
            headers.get("origin"),
            scope.get("scheme", "ws"),
            headers,
            self.platform.settings.app_allowed_origins,
        ):
            raise _Refusal(403, "Access denied", "WebSocket from a foreign origin.")
        return record, caller

    def _caller(self, scope: Scope, headers: dict[str, str]) -> Caller | None:
        if headers.get("authorization") or headers.get("x-api-key"):
            try:
                caller = self.platform.authenticator.authenticate(presented_token(headers))
            except BastionError:
                return None
            return caller if caller.has_scope(APP_SCOPE) else None
        cookie = cookies_of(headers.get("cookie", "")).get(SESSION_COOKIE)
        return self.sessions.caller(cookie)

    def _port(self, record: AppRecord) -> int:
        process = self.apps.supervisor.get(record.name)
        if process is None or process.state == ProcessState.STOPPED:
            deploying = self.apps.status(record).app_state.value == "DEPLOYING"
            text = (
                "The app is being deployed; this page reloads by itself."
                if deploying
                else "The app is stopped. Its owner can start it (bastion apps start)."
            )
            raise _Refusal(
                503,
                "App unavailable",
                text,
                retry_after=5 if deploying else None,
                code="TEMPORARILY_UNAVAILABLE",
            )
        if process.state == ProcessState.STARTING:
            raise _Refusal(
                503,
                "App starting",
                "The app is starting; this page reloads by itself.",
                retry_after=2,
                code="TEMPORARILY_UNAVAILABLE",
            )
        if process.state == ProcessState.CRASHED:
            raise _Refusal(
                502,
                "App crashed",
                "The app stopped unexpectedly and is being restarted; this page reloads by "
                "itself. Its owner can read why with: bastion apps logs " + record.name,
                retry_after=3,
                code="UPSTREAM_ERROR",
            )
        return process.port

    def _audit_denied(self, scope: Scope, caller: Caller, name: str, request_id: str) -> None:
        client = scope.get("client")
        self.platform.audit.emit(
            AuditEvent(
                event_time=now_ms(self.platform.clock),
                request_id=request_id,
                user_email=caller.name,
                service_name="apps",
                action_name="openApp",
                request_params={"name": name},
                status_code=403,
                error_message="CAN_USE needed",
                source_ip_address=client[0] if client else None,
            )
        )

    # -- what the app is told ---------------------------------------------------------------

    def _upstream_headers(
        self,
        scope: Scope,
        headers: dict[str, str],
        record: AppRecord,
        caller: Caller,
        request_id: str,
        name: str,
    ) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        connection_listed = {
            t.strip() for t in headers.get("connection", "").lower().split(",") if t.strip()
        }
        for key, value in scope["headers"]:
            lower = key.decode("latin-1").lower()
            if lower in _HOP_BY_HOP or lower in connection_listed or lower == "authorization":
                continue
            if lower.startswith(_SPOOFABLE) or lower == "x-api-key":
                continue
            if scope["type"] == "websocket" and (
                lower.startswith("sec-websocket-") or lower == "origin"
            ):
                continue
            text = value.decode("latin-1")
            if lower == "cookie":
                text = _without_own_cookies(text)
                if not text:
                    continue
            out.append((lower, text))
        client = scope.get("client")
        email = caller.name if "@" in caller.name else f"{caller.name}@bastion.local"
        out += [
            ("x-forwarded-user", caller.name),
            ("x-forwarded-email", email),
            ("x-forwarded-preferred-username", caller.display_name or caller.name),
            ("x-forwarded-host", headers.get("host", "")),
            ("x-forwarded-proto", "https" if scope.get("scheme") in ("https", "wss") else "http"),
            ("x-forwarded-prefix", f"{PREFIX}{name}"),
            ("x-real-ip", client[0] if client else ""),
            ("x-request-id", request_id),
        ]
        if scope["type"] == "http" and "host" in headers:
            out.append(("host", headers["host"]))
        scopes = record.effective_user_api_scopes
        if scopes:
            out.append(("x-forwarded-access-token", self._token(caller, record.name, scopes)))
        return out

    def _token(self, caller: Caller, app: str, scopes: tuple[str, ...]) -> str:
        """A token for the user acting through ``app``: the user's own grants, the app's
        scopes, ending with the login session (or token) it came from. Reused while more than
        half of its life is left."""
        parent = caller.session_id or caller.token_id
        key = (caller.principal_id, parent, app, scopes)
        now = self.platform.clock.now()
        cached = self._tokens.get(key)
        ttl = self.platform.settings.app_token_ttl_s
        if cached is not None and cached[1] - now > ttl / 2:
            return cached[0]
        extra = {"app": app}
        if caller.session_id is None and caller.token_id is not None:
            extra["ptk"] = caller.token_id
        token, expires = self.platform.codec.issue(
            caller.principal_id, scopes, ttl, session_id=caller.session_id, **extra
        )
        if len(self._tokens) >= _TOKEN_CACHE_SIZE:
            self._tokens.clear()
        self._tokens[key] = (token, float(expires))
        return token

    # -- HTTP -------------------------------------------------------------------------------

    async def _http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        port: int,
        target: str,
        headers: list[tuple[str, str]],
        name: str,
        request_id: str,
    ) -> None:
        query = scope.get("query_string", b"")
        url = f"http://127.0.0.1:{port}{quote(target, safe='/%:@!$&()*+,;=-._~')}"
        if query:
            url += "?" + query.decode("latin-1")
        has_body = any(k in ("content-length", "transfer-encoding") for k, _ in _raw(scope))
        body_done = asyncio.Event()
        if not has_body:
            body_done.set()
        request = self.client.build_request(
            scope["method"],
            url,
            headers=headers,
            content=_body(receive, body_done) if has_body else None,
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            logger.info("app %s did not answer: %r", name, exc)
            self.apps.supervisor.check_once()
            refusal = _Refusal(
                502,
                "App not answering",
                "The app did not answer; it may be restarting. This page reloads by itself.",
                retry_after=3,
                code="UPSTREAM_ERROR",
            )
            await _refuse(send, refusal, dict(headers), request_id)
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": _response_headers(response, name, request_id),
                }
            )
            await self._stream_body(response, receive, send, body_done)
        finally:
            await response.aclose()

    @staticmethod
    async def _stream_body(
        response: httpx.Response, receive: Receive, send: Send, body_done: asyncio.Event
    ) -> None:
        """Relay the body as it arrives; stop reading the app when the client goes away
        (an endless event stream would otherwise be read for nobody)."""

        async def relay() -> None:
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def watch() -> None:
            await body_done.wait()
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

        relaying = asyncio.ensure_future(relay())
        watching = asyncio.ensure_future(watch())
        done, _ = await asyncio.wait({relaying, watching}, return_when=asyncio.FIRST_COMPLETED)
        for task in (relaying, watching):
            if task not in done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if relaying in done:
            relaying.result()

    # -- WebSocket --------------------------------------------------------------------------

    async def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        port: int,
        target: str,
        headers: list[tuple[str, str]],
        client_headers: dict[str, str],
    ) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"ws://127.0.0.1:{port}{quote(target, safe='/%:@!$&()*+,;=-._~')}"
        if query:
            url += "?" + query
        protocols = [p.strip() for p in client_headers.get("sec-websocket-protocol", "").split(",")]
        try:
            upstream = await connect(
                url,
                additional_headers=headers,
                subprotocols=[p for p in protocols if p] or None,  # type: ignore[misc]
                max_size=None,
                ping_interval=20,
                ping_timeout=60,
                open_timeout=10,
                compression=None,
                proxy=None,
            )
        except (OSError, InvalidHandshake, InvalidStatus, TimeoutError) as exc:
            logger.info("app WebSocket %s refused: %s", url, exc)
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await _pump(receive, send, upstream)


async def _pump(receive: Receive, send: Send, upstream: ClientConnection) -> None:
    async def from_client() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close()
                return
            if message.get("bytes") is not None:
                await upstream.send(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send(message["text"])

    async def from_app() -> None:
        try:
            async for data in upstream:
                if isinstance(data, bytes):
                    await send({"type": "websocket.send", "bytes": data})
                else:
                    await send({"type": "websocket.send", "text": data})
            code = upstream.close_code or 1000
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else 1011
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": code if code != 1005 else 1000})

    tasks = {asyncio.ensure_future(from_client()), asyncio.ensure_future(from_app())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            await upstream.close()


# -- helpers ------------------------------------------------------------------------------------


def _raw(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]


def _headers(scope: Scope) -> dict[str, str]:
    return dict(_raw(scope))


def _wants_html(scope: Scope, headers: dict[str, str]) -> bool:
    if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
        return False
    return "text/html" in headers.get("accept", "")


def _without_own_cookies(header: str) -> str:
    kept = []
    for part in header.split(";"):
        name = part.split("=", 1)[0].strip()
        if name and name not in _OWN_COOKIES:
            kept.append(part.strip())
    return "; ".join(kept)


async def _body(receive: Receive, done: asyncio.Event) -> AsyncIterator[bytes]:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise httpx.ReadError("the client went away")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            done.set()
            return


def _response_headers(
    response: httpx.Response, name: str, request_id: str
) -> list[tuple[bytes, bytes]]:
    prefix = f"{PREFIX}{name}"
    out: list[tuple[bytes, bytes]] = []
    for key, value in response.headers.raw:
        lower = key.decode("latin-1").lower()
        if lower in _HOP_BY_HOP or lower == "x-request-id":
            continue
        text = value.decode("latin-1")
        if lower == "location" and text.startswith("/") and not text.startswith("//"):
            text = prefix + text
        elif lower == "set-cookie":
            text = _scoped_cookie(text, prefix)
        out.append((lower.encode("latin-1"), text.encode("latin-1")))
    out.append((b"x-request-id", request_id.encode()))
    return out


def _scoped_cookie(header: str, prefix: str) -> str:
    """An app's cookie, kept to the app's own folder and never for another domain."""
    parts = [p.strip() for p in header.split(";")]
    kept = [parts[0]]
    path = "/"
    for attribute in parts[1:]:
        key = attribute.split("=", 1)[0].strip().lower()
        if key == "domain":
            continue
        if key == "path":
            path = attribute.split("=", 1)[1].strip() if "=" in attribute else "/"
            continue
        kept.append(attribute)
    if not path.startswith("/"):
        path = "/" + path
    kept.insert(1, f"Path={prefix}{path}")
    return "; ".join(kept)


async def _refuse(send: Send, refusal: _Refusal, headers: dict[str, str], request_id: str) -> None:
    extra: list[tuple[bytes, bytes]] = [
        (b"x-request-id", request_id.encode()),
        (b"cache-control", b"no-store"),
    ]
    if refusal.location is not None:
        extra.append((b"location", refusal.location.encode("latin-1")))
    if refusal.retry_after is not None:
        extra.append((b"retry-after", str(refusal.retry_after).encode()))
    if "text/html" in headers.get("accept", ""):
        body = message_page(refusal.title, refusal.text, refresh_s=refusal.retry_after).encode()
        kind = b"text/html; charset=utf-8"
    else:
        body = orjson.dumps({"error_code": refusal.code, "message": refusal.text})
        kind = b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", kind),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
