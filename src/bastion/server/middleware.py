"""Pure-ASGI middleware: request ids, body size limits and the audit trail of API calls."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.clock import now_ms
from bastion.errors import PayloadTooLarge
from bastion.governance.audit import AuditEvent, redact
from bastion.platform import Platform, RequestInfo, current_request

logger = logging.getLogger(__name__)
_UNAUDITED = ("/healthz", "/metrics")
# Uploads stream to disk with their own, larger bound (Settings.staging_max_file_bytes).
_UPLOAD_PREFIXES = ("/api/2.0/bastion/staging/files/",)
_CAMEL = re.compile(r"_([a-z])")


def _action(name: str) -> str:
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


def path_is_api(scope: Scope) -> bool:
    return str(scope.get("path", "")).startswith("/api/") and scope.get("method") in (
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
    )


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform
        self.max_body = platform.settings.max_body_bytes
        self.max_upload = platform.settings.staging_max_file_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = uuid.uuid4().hex
        client = scope.get("client")
        info = RequestInfo(request_id, client[0] if client else None, headers.get("user-agent"))
        token = current_request.set(info)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status_holder = {"status": 500}
        responded = {"value": False}
        started = time.perf_counter()

        declared_type = headers.get("content-type", "")
        if path_is_api(scope) and "json" not in declared_type and "protobuf" not in declared_type:
            # Databricks' APIs take JSON whatever the client declares (curl -d sends a form
            # type); OTLP protobuf (the traces receiver) is the one other body they accept.
            scope["headers"] = [
                (k, v) for k, v in scope["headers"] if k.lower() != b"content-type"
            ] + [(b"content-type", b"application/json")]

        max_body = self.max_body
        if scope.get("method") == "PUT" and str(scope.get("path", "")).startswith(_UPLOAD_PREFIXES):
            max_body = self.max_upload
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            await self._reject_too_large(send, request_id, max_body)
            current_request.reset(token)
            return

        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    too_large = True
                    raise PayloadTooLarge(f"The request body is larger than {max_body} bytes.")
            return message

        async def send_with_id(message: Message) -> None:
            if too_large:
                return  # the 413 below answers instead of whatever the app made of it
            if message["type"] == "http.response.start":
                responded["value"] = True
                status_holder["status"] = message["status"]
                extra = [
                    (b"x-request-id", request_id.encode()),
                    (
                        b"x-bastion-overhead-ms",
                        f"{(time.perf_counter() - started) * 1000:.3f}".encode(),
                    ),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
            if too_large:
                status_holder["status"] = 413
                state["error_message"] = "request body too large"
                await self._reject_too_large(send, request_id, max_body)
        except Exception:  # answered here, so the connection stays usable (no re-raise)
            logger.exception("unhandled error in request %s", request_id)
            status_holder["status"] = 500
            if not responded["value"]:
                await self._internal_error(send, request_id)
        finally:
            current_request.reset(token)
            self._audit(scope, state, info, status_holder["status"])

    async def _internal_error(self, send: Send, request_id: str) -> None:
        body = (
            b'{"error_code":"INTERNAL_ERROR","message":"Internal error; the server log has '
            b"details (request " + request_id.encode() + b')."}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _reject_too_large(self, send: Send, request_id: str, max_body: int) -> None:
        body = (
            b'{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"The request body is larger than '
            + str(max_body).encode()
            + b' bytes."}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _audit(self, scope: Scope, state: dict[str, Any], info: RequestInfo, status: int) -> None:
        path: str = scope.get("path", "")
        route = scope.get("route")
        if path in _UNAUDITED or route is None or state.get("audit_skip"):
            return
        caller = state.get("caller")
        params: dict[str, Any] = dict(scope.get("path_params") or {})
        params.update(state.get("audit_params") or {})
        tags = getattr(route, "tags", None) or ["bastion"]
        self.platform.audit.emit(
            AuditEvent(
                event_time=now_ms(self.platform.clock),
                request_id=info.request_id,
                user_email=caller.name if caller else state.get("audit_user"),
                service_name=str(tags[0]),
                action_name=_action(getattr(route, "name", "") or path),
                request_params=redact(params),
                status_code=status,
                error_message=None if status < 400 else state.get("error_message"),
                source_ip_address=info.source_ip,
                user_agent=info.user_agent,
                acting_app=caller.acting_app if caller else None,
            )
        )
