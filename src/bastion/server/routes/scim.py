"""SCIM 2.0 provisioning of users, groups and service principals, as identity providers expect."""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from bastion.clock import now_ms
from bastion.errors import InvalidRequest
from bastion.fields import MAX_INT32, parse_id
from bastion.identity.model import Caller, PrincipalKind, PrincipalRecord
from bastion.server.auth import authenticated, platform_of, require_admin

router = APIRouter(prefix="/api/2.0/preview/scim/v2", tags=["accounts"])
# Secrets of service principals, at Databricks' path for OAuth secrets.
secrets_router = APIRouter(prefix="/api/2.0/accounts/servicePrincipals", tags=["accounts"])

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
SP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

read = authenticated("iam.scim:read")
write = authenticated("iam.scim")
me = authenticated("iam.current-user:read")

_FILTER = re.compile(r'^\s*(\w+)\s+eq\s+"([^"]*)"\s*$', re.IGNORECASE)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Email(_Strict):
    value: str
    type: str | None = None
    primary: bool | None = None
    display: str | None = None


class Member(_Strict):
    value: str
    display: str | None = None
    ref: str | None = Field(default=None, alias="$ref")


class UserIn(_Strict):
    schemas: list[str] | None = None
    userName: str
    displayName: str | None = None
    active: bool = True
    emails: list[Email] | None = None
    externalId: str | None = None
    password: str | None = Field(default=None, min_length=8, max_length=256)
    groups: list[Member] | None = None
    entitlements: list[dict[str, str]] | None = None
    name: dict[str, str] | None = None
    id: str | None = None


class GroupIn(_Strict):
    schemas: list[str] | None = None
    displayName: str
    members: list[Member] | None = None
    externalId: str | None = None
    entitlements: list[dict[str, str]] | None = None
    id: str | None = None


class ServicePrincipalIn(_Strict):
    schemas: list[str] | None = None
    displayName: str
    applicationId: str | None = None
    active: bool = True
    externalId: str | None = None
    entitlements: list[dict[str, str]] | None = None
    id: str | None = None


class PatchOperation(_Strict):
    op: Literal["add", "remove", "replace", "Add", "Remove", "Replace"]
    path: str | None = None
    value: Any = None


class PatchIn(_Strict):
    schemas: list[str] | None = None
    Operations: list[PatchOperation] = Field(min_length=1, max_length=100)


def _id(text: str) -> int:
    value = parse_id(text)
    if value is None:
        raise InvalidRequest(f"Invalid id {text[:64]!r}: ids are decimal numbers (ASCII digits).")
    return value


def _list(resources: list[dict[str, Any]], start_index: int, count: int) -> dict[str, Any]:
    start = max(start_index, 1)
    page = resources[start - 1 : start - 1 + count]
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": len(resources),
        "startIndex": start,
        "itemsPerPage": len(page),
        "Resources": page,
    }


def _filter(items: list[dict[str, Any]], expression: str | None) -> list[dict[str, Any]]:
    if not expression:
        return items
    match = _FILTER.match(expression)
    if not match:
        raise InvalidRequest('Unsupported filter; use: <attribute> eq "<value>".')
    attribute, value = match.groups()
    key = next(
        (k for k in (items[0] if items else {}) if k.lower() == attribute.lower()), attribute
    )
    return [i for i in items if str(i.get(key, "")).lower() == value.lower()]


def _user(request: Request, record: PrincipalRecord) -> dict[str, Any]:
    identity = platform_of(request).identity
    return {
        "schemas": [USER_SCHEMA],
        "id": str(record.id),
        "userName": record.name,
        "displayName": record.display_name,
        "active": record.active,
        "emails": [{"value": record.name, "type": "work", "primary": True}],
        "externalId": record.external_id,
        "groups": [
            {"value": str(g.id), "display": g.display_name, "type": "direct"}
            for g in identity.groups_of(record.id)
        ],
        "meta": {"resourceType": "User", "created": record.created_at},
    }


def _group(request: Request, record: PrincipalRecord) -> dict[str, Any]:
    identity = platform_of(request).identity
    return {
        "schemas": [GROUP_SCHEMA],
        "id": str(record.id),
        "displayName": record.display_name,
        "externalId": record.external_id,
        "members": [
            {"value": str(m.id), "display": m.display_name} for m in identity.members(record.id)
        ],
        "meta": {"resourceType": "Group", "created": record.created_at},
    }


def _service_principal(record: PrincipalRecord) -> dict[str, Any]:
    return {
        "schemas": [SP_SCHEMA],
        "id": str(record.id),
        "applicationId": record.name,
        "displayName": record.display_name,
        "active": record.active,
        "externalId": record.external_id,
        "meta": {"resourceType": "ServicePrincipal", "created": record.created_at},
    }


# -- Me ---------------------------------------------------------------------------------------


@router.get("/Me", name="get_current_user")
def get_me(request: Request, caller: Caller = Depends(me)) -> dict[str, Any]:
    record = platform_of(request).identity.get(caller.principal_id)
    if record.kind is PrincipalKind.SERVICE_PRINCIPAL:
        return _service_principal(record)
    return _user(request, record)


# -- Users ------------------------------------------------------------------------------------


@router.get("/Users", name="list_users")
def list_users(
    request: Request,
    filter: str | None = None,
    startIndex: int = Query(default=1, ge=1, le=MAX_INT32),
    count: int = Query(default=100, ge=0, le=MAX_INT32),
    _caller: Caller = Depends(read),
) -> dict[str, Any]:
    records = platform_of(request).identity.list_principals(PrincipalKind.USER)
    items = _filter([_user(request, r) for r in records], filter)
    return _list(items, startIndex, min(max(count, 0), 1000))


@router.post("/Users", status_code=201, name="create_user")
def create_user(request: Request, body: UserIn, caller: Caller = Depends(write)) -> dict[str, Any]:
    require_admin(caller)
    identity = platform_of(request).identity
    request.state.audit_params = {"userName": body.userName}
    record = identity.create_principal(
        PrincipalKind.USER,
        body.userName,
        body.displayName,
        password=body.password,
        active=body.active,
        external_id=body.externalId,
    )
    for group in body.groups or []:
        identity.set_members(_id(group.value), add=[record.id])
    return _user(request, record)


@router.get("/Users/{user_id}", name="get_user")
def get_user(request: Request, user_id: str, _caller: Caller = Depends(read)) -> dict[str, Any]:
    return _user(request, platform_of(request).identity.get(_id(user_id), PrincipalKind.USER))


@router.put("/Users/{user_id}", name="replace_user")
def replace_user(
    request: Request, user_id: str, body: UserIn, caller: Caller = Depends(write)
) -> dict[str, Any]:
    require_admin(caller)
    identity = platform_of(request).identity
    record = identity.get(_id(user_id), PrincipalKind.USER)
    if body.userName != record.name:
        raise InvalidRequest("userName cannot be changed.")
    record = identity.update(
        record.id,
        display_name=body.displayName or record.name,
        active=body.active,
        password=body.password,
        external_id=body.externalId,
    )
    return _user(request, record)


def _apply_principal_patch(
    request: Request, principal_id: int, body: PatchIn, kind: PrincipalKind
) -> None:
    identity = platform_of(request).identity
    for operation in body.Operations:
        op = operation.op.lower()
        path = (operation.path or "").lower()
        value = operation.value
        if path == "members" and kind is PrincipalKind.GROUP:
            ids = [_id(str(m.get("value", ""))) for m in (value or []) if isinstance(m, dict)]
            if op == "remove" and operation.path and not value:
                raise InvalidRequest("Remove of members needs a value list.")
            if op == "replace":
                current = {m.id for m in identity.members(principal_id)}
                identity.set_members(principal_id, add=ids, remove=current - set(ids))
            else:
                identity.set_members(principal_id, **{"add" if op == "add" else "remove": ids})
            continue
        if path.startswith("members[value eq") and op == "remove" and kind is PrincipalKind.GROUP:
            match = re.search(r'"([0-9]+)"', operation.path or "")
            member = parse_id(match.group(1)) if match else None
            if member is None:
                raise InvalidRequest(f"Unsupported path {operation.path!r}.")
            identity.set_members(principal_id, remove=[member])
            continue
        updates = value if (not path and isinstance(value, dict)) else {path: value}
        for key, new in updates.items():
            key = key.lower()
            if op == "remove":
                raise InvalidRequest(f"Attribute {key!r} cannot be removed.")
            if key == "active" and isinstance(new, bool):
                identity.update(principal_id, active=new)
            elif key == "displayname" and isinstance(new, str):
                identity.update(principal_id, display_name=new)
            elif key == "externalid" and isinstance(new, str):
                identity.update(principal_id, external_id=new)
            elif key == "password" and isinstance(new, str) and kind is PrincipalKind.USER:
                if not 8 <= len(new) <= 256:
                    raise InvalidRequest("A password must have 8 to 256 characters.")
                identity.update(principal_id, password=new)
            else:
                raise InvalidRequest(f"Unsupported patch of {key!r}.")


@router.patch("/Users/{user_id}", name="patch_user")
def patch_user(
    request: Request, user_id: str, body: PatchIn, caller: Caller = Depends(write)
) -> dict[str, Any]:
    require_admin(caller)
    identity = platform_of(request).identity
    record = identity.get(_id(user_id), PrincipalKind.USER)
    _apply_principal_patch(request, record.id, body, PrincipalKind.USER)
    return _user(request, identity.get(record.id))


@router.delete("/Users/{user_id}", status_code=204, name="delete_user")
def delete_user(request: Request, user_id: str, caller: Caller = Depends(write)) -> Response:
    require_admin(caller)
    if _id(user_id) == caller.principal_id:
        raise InvalidRequest("You cannot delete yourself.")
    platform_of(request).identity.delete(_id(user_id), PrincipalKind.USER)
    return Response(status_code=204)


# -- Groups -----------------------------------------------------------------------------------


@router.get("/Groups", name="list_groups")
def list_groups(
    request: Request,
    filter: str | None = None,
    startIndex: int = Query(default=1, ge=1, le=MAX_INT32),
    count: int = Query(default=100, ge=0, le=MAX_INT32),
    _caller: Caller = Depends(read),
) -> dict[str, Any]:
    records = platform_of(request).identity.list_principals(PrincipalKind.GROUP)
    items = _filter([_group(request, r) for r in records], filter)
    return _list(items, startIndex, min(max(count, 0), 1000))


@router.post("/Groups", status_code=201, name="create_group")
def create_group(
    request: Request, body: GroupIn, caller: Caller = Depends(write)
) -> dict[str, Any]:
    require_admin(caller)
    identity = platform_of(request).identity
    request.state.audit_params = {"displayName": body.displayName}
    record = identity.create_principal(
        PrincipalKind.GROUP, body.displayName, external_id=body.externalId
    )
    if body.members:
        identity.set_members(record.id, add=[_id(m.value) for m in body.members])
    return _group(request, record)


@router.get("/Groups/{group_id}", name="get_group")
def get_group(request: Request, group_id: str, _caller: Caller = Depends(read)) -> dict[str, Any]:
    return _group(request, platform_of(request).identity.get(_id(group_id), PrincipalKind.GROUP))


@router.patch("/Groups/{group_id}", name="patch_group")
def patch_group(
    request: Request, group_id: str, body: PatchIn, caller: Caller = Depends(write)
) -> dict[str, Any]:
    require_admin(caller)
    identity = platform_of(request).identity
    record = identity.get(_id(group_id), PrincipalKind.GROUP)
    _apply_principal_patch(request, record.id, body, PrincipalKind.GROUP)
    return _group(request, identity.get(record.id))


@router.delete("/Groups/{group_id}", status_code=204, name="delete_group")
def delete_group(request: Request, group_id: str, caller: Caller = Depends(write)) -> Response:
    require_admin(caller)
    platform_of(request).identity.delete(_id(group_id), PrincipalKind.GROUP)
    return Response(status_code=204)


# -- Service principals -----------------------------------------------------------------------


@router.get("/ServicePrincipals", name="list_service_principals")
def list_service_principals(
    request: Request,
    filter: str | None = None,
    startIndex: int = Query(default=1, ge=1, le=MAX_INT32),
    count: int = Query(default=100, ge=0, le=MAX_INT32),
    _caller: Caller = Depends(read),
) -> dict[str, Any]:
    records = platform_of(request).identity.list_principals(PrincipalKind.SERVICE_PRINCIPAL)
    items = _filter([_service_principal(r) for r in records], filter)
    return _list(items, startIndex, min(max(count, 0), 1000))


@router.post("/ServicePrincipals", status_code=201, name="create_service_principal")
def create_service_principal(
    request: Request, body: ServicePrincipalIn, caller: Caller = Depends(write)
) -> dict[str, Any]:
    require_admin(caller)
    request.state.audit_params = {"displayName": body.displayName}
    record = platform_of(request).identity.create_service_principal(
        body.displayName, body.applicationId
    )
    if not body.active:
        record = platform_of(request).identity.update(record.id, active=False)
    return _service_principal(record)


@router.get("/ServicePrincipals/{sp_id}", name="get_service_principal")
def get_service_principal(
    request: Request, sp_id: str, _caller: Caller = Depends(read)
) -> dict[str, Any]:
    record = platform_of(request).identity.get(_id(sp_id), PrincipalKind.SERVICE_PRINCIPAL)
    return _service_principal(record)


@router.patch("/ServicePrincipals/{sp_id}", name="patch_service_principal")
def patch_service_principal(
    request: Request, sp_id: str, body: PatchIn, caller: Caller = Depends(write)
) -> dict[str, Any]:
    require_admin(caller)
    identity = platform_of(request).identity
    record = identity.get(_id(sp_id), PrincipalKind.SERVICE_PRINCIPAL)
    _apply_principal_patch(request, record.id, body, PrincipalKind.SERVICE_PRINCIPAL)
    return _service_principal(identity.get(record.id))


@router.delete("/ServicePrincipals/{sp_id}", status_code=204, name="delete_service_principal")
def delete_service_principal(
    request: Request, sp_id: str, caller: Caller = Depends(write)
) -> Response:
    require_admin(caller)
    platform_of(request).identity.delete(_id(sp_id), PrincipalKind.SERVICE_PRINCIPAL)
    return Response(status_code=204)


@secrets_router.post("/{sp_id}/credentials/secrets", name="create_service_principal_secret")
def create_secret(request: Request, sp_id: str, caller: Caller = Depends(write)) -> dict[str, Any]:
    """A new OAuth client secret for the service principal; any earlier one stops working."""
    require_admin(caller)
    platform = platform_of(request)
    record = platform.identity.get(_id(sp_id), PrincipalKind.SERVICE_PRINCIPAL)
    secret = platform.identity.new_client_secret(record.id)
    return {
        "id": record.name,
        "client_id": record.name,
        "secret": secret,
        "status": "ACTIVE",
        "create_time": now_ms(platform.clock),
    }
