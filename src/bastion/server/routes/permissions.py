"""Grants: ``/api/2.1/unity-catalog/permissions`` and ``effective-permissions``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import InvalidRequest, PermissionDenied
from bastion.governance.privileges import parse_privilege
from bastion.governance.securables import parse_name, parse_type
from bastion.governance.store import GrantChange
from bastion.identity.model import Caller
from bastion.server.auth import authenticated, platform_of

router = APIRouter(prefix="/api/2.1/unity-catalog", tags=["unityCatalog"])


class PermissionsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principal: str = Field(min_length=1, max_length=255)
    add: list[str] = Field(default_factory=list, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


class UpdatePermissions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    changes: list[PermissionsChange] = Field(min_length=1, max_length=100)


@router.get("/permissions/{securable_type}/{full_name}", name="get_permissions")
def get_permissions(
    request: Request,
    securable_type: str,
    full_name: str,
    principal: str | None = None,
    caller: Caller = Depends(authenticated("catalog.permissions:read")),
) -> dict[str, Any]:
    platform = platform_of(request)
    kind = parse_type(securable_type)
    name = parse_name(kind, full_name)
    node = platform.authorizer.node(kind, name)
    if not platform.authorizer.visible(caller, node):
        raise PermissionDenied(f"User {caller.name} may not see {kind.label} '{name}'.")
    grants = platform.governance.grants(node.id)
    return {
        "privilege_assignments": [
            {"principal": who, "privileges": [p.value for p in privileges]}
            for who, privileges in grants.items()
            if (principal is None or who == principal)
            and platform.authorizer.sees_grantee(caller, node, who)
        ]
    }


@router.patch("/permissions/{securable_type}/{full_name}", name="update_permissions")
def update_permissions(
    request: Request,
    securable_type: str,
    full_name: str,
    body: UpdatePermissions,
    caller: Caller = Depends(authenticated("catalog.permissions")),
) -> dict[str, Any]:
    platform = platform_of(request)
    kind = parse_type(securable_type)
    name = parse_name(kind, full_name)
    request.state.audit_params = {
        "securable_type": kind.value,
        "securable_full_name": name,
        "changes": [c.model_dump() for c in body.changes],
    }
    node = platform.authorizer.node(kind, name)
    if not platform.authorizer.can_manage_grants(caller, node):
        raise PermissionDenied(
            f"User {caller.name} may not manage grants on {kind.label} '{name}'; "
            "that needs ownership or MANAGE."
        )
    changes = []
    for change in body.changes:
        who = platform.authenticator.principal(change.principal)
        if who is None:
            raise InvalidRequest(f"Principal {change.principal!r} does not exist.")
        changes.append(
            GrantChange(
                who.id,
                add=tuple(parse_privilege(p, kind) for p in change.add),
                remove=tuple(parse_privilege(p, kind) for p in change.remove),
            )
        )
    platform.governance.update_grants(node.id, changes)
    return get_permissions(request, securable_type, full_name, None, caller)


@router.get("/effective-permissions/{securable_type}/{full_name}", name="get_effective_permissions")
def get_effective_permissions(
    request: Request,
    securable_type: str,
    full_name: str,
    principal: str | None = None,
    caller: Caller = Depends(authenticated("catalog.permissions:read")),
) -> dict[str, Any]:
    """Grants on the object and those inherited from its catalog and schema."""
    platform = platform_of(request)
    kind = parse_type(securable_type)
    name = parse_name(kind, full_name)
    node = platform.authorizer.node(kind, name)
    if not platform.authorizer.visible(caller, node):
        raise PermissionDenied(f"User {caller.name} may not see {kind.label} '{name}'.")
    by_principal: dict[str, list[dict[str, Any]]] = {}
    current: Any = node
    snap = platform.authorizer.snapshot()
    while current is not None:
        for who, privileges in platform.governance.grants(current.id).items():
            if principal is not None and who != principal:
                continue
            if not platform.authorizer.sees_grantee(caller, node, who):
                continue
            for privilege in privileges:
                entry: dict[str, Any] = {"privilege": privilege.value}
                if current is not node:
                    entry["inherited_from_type"] = current.type.value.upper()
                    entry["inherited_from_name"] = current.full_name
                by_principal.setdefault(who, []).append(entry)
        current = snap.nodes.get(current.parent_id) if current.parent_id else None
    return {
        "privilege_assignments": [
            {"principal": who, "privileges": entries} for who, entries in by_principal.items()
        ]
    }
