"""Unity Catalog volumes: ``/api/2.1/unity-catalog/volumes``, governed like tables.

Creating one needs ``CREATE VOLUME`` on its schema (with the ``USE`` rights); reading its
description needs ``READ VOLUME``; changing it needs ownership (or ``MANAGE``); grants of
``READ VOLUME`` / ``WRITE VOLUME`` go through the permissions API like any other. Only
``MANAGED`` volumes exist: each is a folder Bastion creates under ``BASTION_HOME/volumes`` from
the validated name parts, so no user input names a server path (``EXTERNAL`` volumes, which
would, are refused).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import InvalidRequest, PermissionDenied
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType, parse_name, validate_part
from bastion.governance.store import SecurableInfo
from bastion.identity.model import Caller
from bastion.platform import Platform
from bastion.server.auth import authenticated, platform_of
from bastion.server.routes.catalogs import METASTORE_ID, delete_securable

router = APIRouter(prefix="/api/2.1/unity-catalog", tags=["unityCatalog"])
READ = "catalog.volumes:read"
WRITE = "catalog.volumes"


class CreateVolume(BaseModel):
    model_config = ConfigDict(extra="forbid")

    catalog_name: str = Field(max_length=255)
    schema_name: str = Field(max_length=255)
    name: str = Field(max_length=255)
    volume_type: str = Field(default="MANAGED", max_length=16)
    comment: str | None = Field(default=None, max_length=10_000)
    storage_location: str | None = Field(default=None, max_length=4096)


class UpdateVolume(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=10_000)
    new_name: str | None = Field(default=None, max_length=255)
    owner: str | None = Field(default=None, max_length=255)


def volumes_root(platform: Platform) -> Path:
    return platform.settings.home / "volumes"


def _location(platform: Platform, full_name: str) -> Path:
    """The volume's folder: validated name parts under the volumes root, nothing else."""
    root = volumes_root(platform).resolve()
    location = root.joinpath(*full_name.split(".")).resolve()
    if not location.is_relative_to(root) or location == root:
        raise InvalidRequest(f"Invalid volume name {full_name!r}.")
    return location


def volume_info(info: SecurableInfo) -> dict[str, Any]:
    """``VolumeInfo`` in databricks-sdk's shape."""
    catalog, schema, name = info.full_name.split(".")
    return {
        "name": name,
        "catalog_name": catalog,
        "schema_name": schema,
        "full_name": info.full_name,
        "volume_type": "MANAGED",
        "storage_location": info.properties.get("storage_location"),
        "comment": info.comment,
        "owner": info.owner,
        "metastore_id": METASTORE_ID,
        "volume_id": str(info.id),
        "created_at": info.created_at,
        "created_by": info.created_by,
        "updated_at": info.updated_at,
        "updated_by": info.updated_by,
    }


@router.post("/volumes", name="create_volume")
def create_volume(
    request: Request, body: CreateVolume, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    platform = platform_of(request)
    if body.volume_type.upper() != "MANAGED" or body.storage_location is not None:
        raise InvalidRequest(
            "Only MANAGED volumes can be created; Bastion chooses their storage location "
            "(EXTERNAL volumes would name a server path)."
        )
    catalog = validate_part(body.catalog_name, "catalog name")
    schema = f"{catalog}.{validate_part(body.schema_name, 'schema name')}"
    full_name = f"{schema}.{validate_part(body.name, 'volume name')}"
    request.state.audit_params = {"full_name": full_name}
    platform.authorizer.require(caller, Privilege.CREATE_VOLUME, SecurableType.SCHEMA, schema)
    location = _location(platform, full_name)
    info = platform.governance.create(
        SecurableType.VOLUME,
        full_name,
        owner_id=caller.principal_id,
        created_by=caller.name,
        comment=body.comment,
        properties={"volume_type": "MANAGED", "storage_location": str(location)},
    )
    try:
        if location.exists():
            shutil.rmtree(location)  # left by a volume of that name deleted earlier
        location.mkdir(parents=True, mode=0o700)
    except OSError:
        platform.governance.delete(SecurableType.VOLUME, full_name)
        raise
    return volume_info(info)


@router.get("/volumes", name="list_volumes")
def list_volumes(
    request: Request,
    catalog_name: str,
    schema_name: str,
    caller: Caller = Depends(authenticated(READ)),
) -> dict[str, Any]:
    platform = platform_of(request)
    schema = parse_name(SecurableType.SCHEMA, f"{catalog_name}.{schema_name}")
    platform.authorizer.require(caller, Privilege.USE_SCHEMA, SecurableType.SCHEMA, schema)
    infos = platform.governance.list_securables(SecurableType.VOLUME, schema)
    visible = [
        i
        for i in infos
        if platform.authorizer.visible(caller, platform.authorizer.node(i.type, i.full_name))
    ]
    return {"volumes": [volume_info(i) for i in visible]}


@router.get("/volumes/{full_name}", name="read_volume")
def read_volume(
    request: Request, full_name: str, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    platform = platform_of(request)
    name = parse_name(SecurableType.VOLUME, full_name)
    platform.authorizer.require(caller, Privilege.READ_VOLUME, SecurableType.VOLUME, name)
    return volume_info(platform.governance.get(SecurableType.VOLUME, name))


@router.patch("/volumes/{full_name}", name="update_volume")
def update_volume(
    request: Request,
    full_name: str,
    body: UpdateVolume,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    platform = platform_of(request)
    name = parse_name(SecurableType.VOLUME, full_name)
    request.state.audit_params = {"full_name": name}
    if body.new_name is not None or body.owner is not None:
        raise InvalidRequest("Renaming a volume or changing its owner is not supported.")
    node = platform.authorizer.node(SecurableType.VOLUME, name)
    if not (
        platform.authorizer.owns(caller, node)
        or platform.authorizer.has(caller, Privilege.MANAGE, node)
    ):
        raise PermissionDenied(f"Only the owner may change volume '{name}'.")
    info = platform.governance.update(
        SecurableType.VOLUME, name, updated_by=caller.name, comment=body.comment
    )
    return volume_info(info)


@router.delete("/volumes/{full_name}", name="delete_volume")
def delete_volume(
    request: Request, full_name: str, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    platform = platform_of(request)
    name = parse_name(SecurableType.VOLUME, full_name)
    request.state.audit_params = {"full_name": name}
    delete_securable(platform, caller, SecurableType.VOLUME, name, False)
    shutil.rmtree(_location(platform, name), ignore_errors=True)
    return {}
