"""Prometheus metrics (``/metrics``), for admins: scrape with a bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from bastion.identity.model import Caller
from bastion.observability.metrics import Metrics
from bastion.server.auth import authenticated, require_admin

router = APIRouter(tags=["serving"])


@router.get("/metrics", name="get_metrics")
def metrics(request: Request, caller: Caller = Depends(authenticated("metrics:read"))) -> Response:
    require_admin(caller)
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
