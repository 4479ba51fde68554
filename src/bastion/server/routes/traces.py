"""Spans from agents (e.g. inside an MLflow pyfunc worker) into ``system.tracing.spans``.

An OTLP/HTTP receiver: JSON or protobuf (``application/x-protobuf``, what OpenTelemetry
SDKs and MLflow's exporter send), at ``/api/2.0/bastion/traces`` and, for SDKs configured
with a base endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT=<host>/api/2.0/bastion``), at
``/api/2.0/bastion/v1/traces``.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from bastion.errors import InvalidRequest, PermissionDenied
from bastion.identity.model import Caller, PrincipalKind
from bastion.observability.tracing import ingest_spans, otlp_protobuf_spans
from bastion.server.auth import authenticated, platform_of

router = APIRouter(prefix="/api/2.0/bastion", tags=["serving"])
PROTOBUF = "application/x-protobuf"


@router.post("/traces", name="ingest_spans")
@router.post("/v1/traces", name="ingest_spans_otlp")
async def post_spans(request: Request, caller: Caller = Depends(authenticated("traces"))) -> Any:
    """Accept OTLP spans (``{"resourceSpans": …}``, a list of flat spans, or protobuf).

    Agents run as service principals; admins may post too. Spans are tagged with the caller.
    """
    if not (caller.is_admin or caller.kind is PrincipalKind.SERVICE_PRINCIPAL):
        raise PermissionDenied("Only service principals (agents) and admins may post spans.")
    body = await request.body()
    if request.headers.get("content-type", "").startswith(PROTOBUF):
        ingest_spans(platform_of(request), caller, otlp_protobuf_spans(body))
        # An empty ExportTraceServiceResponse: full success.
        return Response(content=b"", media_type=PROTOBUF)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    spans = parsed if isinstance(parsed, list) else [parsed]
    accepted = ingest_spans(platform_of(request), caller, spans)
    return {"accepted": accepted}
