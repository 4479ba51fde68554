"""Budgets and their current spend: ``/api/2.0/serving-endpoints/{name}/budgets[/{budget}]``.

Budgets are configured in the endpoint's ``ai_gateway`` (``PUT …/ai-gateway``, CAN_MANAGE);
these routes read them with the spend of the current window. Viewing needs CAN_VIEW on the
endpoint; whose spend is shown follows :mod:`bastion.serving.budgets.views`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from bastion.errors import NotFound, PermissionDenied
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType, parse_name
from bastion.identity.model import Caller
from bastion.platform import Platform
from bastion.server.auth import authenticated, platform_of
from bastion.serving.budgets import budgets_of
from bastion.serving.budgets.views import budget_views
from bastion.serving.control import serving_of

router = APIRouter(tags=["serving"])

READ = "serving.serving-endpoints:read"
PATH = "/api/2.0/serving-endpoints/{name}/budgets"
USAGE_TABLE = "system.serving.endpoint_usage"


def _sees_usage(platform: Platform, caller: Caller) -> bool:
    try:
        platform.authorizer.require(caller, Privilege.SELECT, SecurableType.TABLE, USAGE_TABLE)
    except (PermissionDenied, NotFound):
        return False
    return True


def _views(
    request: Request, caller: Caller, name: str, budget: str | None, principal: str | None
) -> list[dict[str, Any]]:
    platform = platform_of(request)
    record = serving_of(platform).endpoints.get(parse_name(SecurableType.SERVING_ENDPOINT, name))
    node = platform.authorizer.node(SecurableType.SERVING_ENDPOINT, record.name)
    held = platform.authorizer.effective(caller, node)
    if not held & {Privilege.CAN_VIEW, Privilege.CAN_QUERY, Privilege.CAN_MANAGE}:
        raise PermissionDenied(
            f"User {caller.name} does not have CAN_VIEW on serving endpoint '{record.name}'."
        )
    manages = Privilege.CAN_MANAGE in held
    kind = None
    if principal is not None:
        found = platform.authenticator.principal(principal)
        kind = found.kind if found is not None else None
    return budget_views(
        budgets_of(platform),
        caller,
        record.name,
        record.ai_gateway,
        sees_all=manages or _sees_usage(platform, caller),
        manages=manages,
        principal=principal,
        principal_kind=kind,
        name=budget,
    )


@router.get(PATH, name="list_serving_endpoint_budgets")
def list_budgets(
    request: Request,
    name: str,
    principal: str | None = Query(default=None, max_length=255),
    caller: Caller = Depends(authenticated(READ)),
) -> dict[str, Any]:
    """Every budget of the endpoint, with the spend of the current window."""
    return {"budgets": _views(request, caller, name, None, principal)}


@router.get(PATH + "/{budget}", name="get_serving_endpoint_budget")
def get_budget(
    request: Request,
    name: str,
    budget: str,
    principal: str | None = Query(default=None, max_length=255),
    caller: Caller = Depends(authenticated(READ)),
) -> dict[str, Any]:
    """One budget and its current spend (``principal``: the spend counted for them)."""
    return _views(request, caller, name, budget, principal)[0]
