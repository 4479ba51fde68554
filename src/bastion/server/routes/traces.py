"""Spans from agents (e.g. inside an MLflow pyfunc worker) into ``system.tracing.spans``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from bastion.errors import InvalidRequest, PermissionDenied
from bastion.identity.model import Caller, PrincipalKind
from bastion.observability.tracing import ingest_spans
from bastion.server.auth import authenticated, platform_of

router = APIRouter(prefix="/api/2.0/bastion", tags=["serving"])


@router.post("/traces", name="ingest_spans")
async def post_spans(
    request: Request, caller: Caller = Depends(authenticated("traces"))
) -> dict[str, Any]:
    """Accept OTLP-JSON spans (``{"resourceSpans": …}`` or a list of flat spans).

    Agents run as service principals; admins may post too. Spans are tagged with the caller.
    """
    if not (caller.is_admin or caller.kind is PrincipalKind.SERVICE_PRINCIPAL):
        raise PermissionDenied("Only service principals (agents) and admins may post spans.")
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    spans = body if isinstance(body, list) else [body]
    accepted = ingest_spans(platform_of(request), caller, spans)
    return {"accepted": accepted}
