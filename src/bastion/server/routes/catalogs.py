"""Unity Catalog catalogs and schemas: ``/api/2.1/unity-catalog/{catalogs,schemas}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import InvalidRequest, PermissionDenied
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType, parse_name, validate_part
from bastion.governance.store import SecurableInfo
from bastion.identity.model import Caller
from bastion.platform import Platform
from bastion.server.auth import authenticated, platform_of, require_admin

router = APIRouter(prefix="/api/2.1/unity-catalog", tags=["unityCatalog"])

METASTORE_ID = "bastion"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateCatalog(_Strict):
    name: str
    comment: str | None = Field(default=None, max_length=10_000)
    properties: dict[str, str] | None = None
    storage_root: str | None = None


class CreateSchema(_Strict):
    name: str
    catalog_name: str
    comment: str | None = Field(default=None, max_length=10_000)
    properties: dict[str, str] | None = None
    storage_root: str | None = None


class UpdateSecurable(_Strict):
    comment: str | None = Field(default=None, max_length=10_000)
    owner: str | None = None
    properties: dict[str, str] | None = None
    new_name: str | None = None


def _catalog(info: SecurableInfo) -> dict[str, Any]:
    return {
        "name": info.full_name,
        "full_name": info.full_name,
        "comment": info.comment,
        "owner": info.owner,
        "properties": info.properties,
        "catalog_type": "MANAGED_CATALOG",
        "metastore_id": METASTORE_ID,
        "created_at": info.created_at,
        "created_by": info.created_by,
        "updated_at": info.updated_at,
        "updated_by": info.updated_by,
        "id": str(info.id),
    }


def _schema(info: SecurableInfo) -> dict[str, Any]:
    catalog, name = info.full_name.split(".")
    return {
        "name": name,
        "catalog_name": catalog,
        "full_name": info.full_name,
        "comment": info.comment,
        "owner": info.owner,
        "properties": info.properties,
        "metastore_id": METASTORE_ID,
        "created_at": info.created_at,
        "created_by": info.created_by,
        "updated_at": info.updated_at,
        "updated_by": info.updated_by,
        "schema_id": str(info.id),
    }


def _visible_or_denied(
    platform: Platform, caller: Caller, securable_type: SecurableType, full_name: str
) -> None:
    node = platform.authorizer.node(securable_type, full_name)
    if not platform.authorizer.visible(caller, node):
        raise PermissionDenied(
            f"User {caller.name} does not have any privilege on {securable_type.label} "
            f"'{full_name}'."
        )


def update_securable(
    platform: Platform,
    caller: Caller,
    securable_type: SecurableType,
    full_name: str,
    body: UpdateSecurable,
) -> SecurableInfo:
    """Owners and MANAGE holders may change comment and properties; ownership moves by owner."""
    if body.new_name is not None:
        raise InvalidRequest("Renaming is not supported; create a new object instead.")
    node = platform.authorizer.node(securable_type, full_name)
    owner_id = None
    if body.owner is not None:
        if not (caller.is_admin or platform.authorizer.owns(caller, node)):
            raise PermissionDenied("Only the owner or an admin may transfer ownership.")
        principal = platform.authenticator.principal(body.owner)
        if principal is None:
            raise InvalidRequest(f"Principal {body.owner!r} does not exist.")
        owner_id = principal.id
    elif not platform.authorizer.has(caller, Privilege.MANAGE, node):
        raise PermissionDenied(
            f"User {caller.name} may not modify {securable_type.label} '{full_name}'."
        )
    return platform.governance.update(
        securable_type,
        full_name,
        updated_by=caller.name,
        comment=body.comment,
        owner_id=owner_id,
        properties=body.properties,
    )


def delete_securable(
    platform: Platform, caller: Caller, securable_type: SecurableType, full_name: str, force: bool
) -> None:
    node = platform.authorizer.node(securable_type, full_name)
    if not (caller.is_admin or platform.authorizer.owns(caller, node)):
        raise PermissionDenied(f"Only the owner may delete {securable_type.label} '{full_name}'.")
    platform.governance.delete(securable_type, full_name, force=force)


# -- catalogs ---------------------------------------------------------------------------------


@router.post("/catalogs", name="create_catalog")
def create_catalog(
    request: Request,
    body: CreateCatalog,
    caller: Caller = Depends(authenticated("catalog.catalogs")),
) -> dict[str, Any]:
    require_admin(caller)
    name = validate_part(body.name, "catalog name")
    request.state.audit_params = {"name": name}
    info = platform_of(request).governance.create(
        SecurableType.CATALOG,
        name,
        owner_id=caller.principal_id,
        created_by=caller.name,
        comment=body.comment,
        properties=body.properties,
    )
    return _catalog(info)


@router.get("/catalogs", name="list_catalogs")
def list_catalogs(
    request: Request, caller: Caller = Depends(authenticated("catalog.catalogs:read"))
) -> dict[str, Any]:
    platform = platform_of(request)
    infos = platform.governance.list_securables(SecurableType.CATALOG)
    visible = [
        i
        for i in infos
        if platform.authorizer.visible(caller, platform.authorizer.node(i.type, i.full_name))
    ]
    return {"catalogs": [_catalog(i) for i in visible]}


@router.get("/catalogs/{name}", name="get_catalog")
def get_catalog(
    request: Request, name: str, caller: Caller = Depends(authenticated("catalog.catalogs:read"))
) -> dict[str, Any]:
    platform = platform_of(request)
    name = parse_name(SecurableType.CATALOG, name)
    _visible_or_denied(platform, caller, SecurableType.CATALOG, name)
    return _catalog(platform.governance.get(SecurableType.CATALOG, name))


@router.patch("/catalogs/{name}", name="update_catalog")
def update_catalog(
    request: Request,
    name: str,
    body: UpdateSecurable,
    caller: Caller = Depends(authenticated("catalog.catalogs")),
) -> dict[str, Any]:
    name = parse_name(SecurableType.CATALOG, name)
    info = update_securable(platform_of(request), caller, SecurableType.CATALOG, name, body)
    return _catalog(info)


@router.delete("/catalogs/{name}", name="delete_catalog")
def delete_catalog(
    request: Request,
    name: str,
    force: bool = False,
    caller: Caller = Depends(authenticated("catalog.catalogs")),
) -> dict[str, Any]:
    name = parse_name(SecurableType.CATALOG, name)
    delete_securable(platform_of(request), caller, SecurableType.CATALOG, name, force)
    return {}


# -- schemas ----------------------------------------------------------------------------------


@router.post("/schemas", name="create_schema")
def create_schema(
    request: Request,
    body: CreateSchema,
    caller: Caller = Depends(authenticated("catalog.schemas")),
) -> dict[str, Any]:
    platform = platform_of(request)
    catalog = validate_part(body.catalog_name, "catalog name")
    full_name = f"{catalog}.{validate_part(body.name, 'schema name')}"
    request.state.audit_params = {"full_name": full_name}
    platform.authorizer.require(caller, Privilege.CREATE_SCHEMA, SecurableType.CATALOG, catalog)
    info = platform.governance.create(
        SecurableType.SCHEMA,
        full_name,
        owner_id=caller.principal_id,
        created_by=caller.name,
        comment=body.comment,
        properties=body.properties,
    )
    return _schema(info)


@router.get("/schemas", name="list_schemas")
def list_schemas(
    request: Request,
    catalog_name: str,
    caller: Caller = Depends(authenticated("catalog.schemas:read")),
) -> dict[str, Any]:
    platform = platform_of(request)
    catalog = parse_name(SecurableType.CATALOG, catalog_name)
    _visible_or_denied(platform, caller, SecurableType.CATALOG, catalog)
    infos = platform.governance.list_securables(SecurableType.SCHEMA, catalog)
    visible = [
        i
        for i in infos
        if platform.authorizer.visible(caller, platform.authorizer.node(i.type, i.full_name))
    ]
    return {"schemas": [_schema(i) for i in visible]}


@router.get("/schemas/{full_name}", name="get_schema")
def get_schema(
    request: Request,
    full_name: str,
    caller: Caller = Depends(authenticated("catalog.schemas:read")),
) -> dict[str, Any]:
    platform = platform_of(request)
    full_name = parse_name(SecurableType.SCHEMA, full_name)
    _visible_or_denied(platform, caller, SecurableType.SCHEMA, full_name)
    return _schema(platform.governance.get(SecurableType.SCHEMA, full_name))


@router.patch("/schemas/{full_name}", name="update_schema")
def update_schema(
    request: Request,
    full_name: str,
    body: UpdateSecurable,
    caller: Caller = Depends(authenticated("catalog.schemas")),
) -> dict[str, Any]:
    full_name = parse_name(SecurableType.SCHEMA, full_name)
    info = update_securable(platform_of(request), caller, SecurableType.SCHEMA, full_name, body)
    return _schema(info)


@router.delete("/schemas/{full_name}", name="delete_schema")
def delete_schema(
    request: Request,
    full_name: str,
    force: bool = False,
    caller: Caller = Depends(authenticated("catalog.schemas")),
) -> dict[str, Any]:
    full_name = parse_name(SecurableType.SCHEMA, full_name)
    delete_securable(platform_of(request), caller, SecurableType.SCHEMA, full_name, force)
    return {}
