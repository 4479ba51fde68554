"""Reading the audit trail (admins), in ``system.access.audit``'s row shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from bastion.fields import MAX_EPOCH_MS
from bastion.identity.model import Caller
from bastion.server.auth import authenticated, platform_of, require_admin

router = APIRouter(prefix="/api/2.0/bastion", tags=["accounts"])


@router.get("/audit", name="list_audit_events")
def list_audit_events(
    request: Request,
    since_ms: int | None = Query(default=None, ge=0, le=MAX_EPOCH_MS),
    action_name: str | None = Query(default=None, max_length=128),
    user: str | None = Query(default=None, max_length=255),
    limit: int = Query(default=100, ge=1, le=10_000),
    caller: Caller = Depends(authenticated("access.audit:read")),
) -> dict[str, Any]:
    require_admin(caller)
    events = platform_of(request).audit.query(
        since_ms=since_ms, action_name=action_name, user_email=user, limit=limit
    )
    return {"events": events}
