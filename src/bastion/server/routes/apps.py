"""Apps: ``/api/2.0/apps[/{name}[/deployments|/start|/stop|/logs]]`` and their ACLs at
``/api/2.0/permissions/apps/{name}``.

Any user may create an app (and owns it, CAN_MANAGE); seeing one needs CAN_USE, changing,
deploying, starting, stopping or reading its logs needs CAN_MANAGE.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.apps import AppResource, app_info, apps_of, deployment_info
from bastion.apps.permissions import (
    LEVEL_DESCRIPTIONS,
    LEVELS,
    PermissionsRequest,
    acl_document,
    resolve_entries,
)
from bastion.errors import PermissionDenied
from bastion.governance.privileges import Privilege
from bastion.governance.store import GrantChange
from bastion.identity.model import Caller
from bastion.server.auth import authenticated, platform_of

router = APIRouter(tags=["apps"])
READ = "apps:read"
WRITE = "apps"
PREFIX = "/api/2.0/apps"


class CreateApp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=10_000)
    user_api_scopes: list[str] | None = Field(default=None, max_length=50)
    resources: list[AppResource] | None = Field(default=None, max_length=50)


class UpdateApp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=10_000)
    user_api_scopes: list[str] | None = Field(default=None, max_length=50)
    resources: list[AppResource] | None = Field(default=None, max_length=50)


class CreateDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_code_path: str = Field(min_length=1, max_length=4096)
    mode: str = Field(default="SNAPSHOT", max_length=32)


@router.post(PREFIX, name="create_app")
def create_app(
    request: Request, body: CreateApp, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    apps = apps_of(platform_of(request))
    request.state.audit_params = {"name": body.name}
    record = apps.create(
        caller,
        body.name,
        description=body.description,
        user_api_scopes=body.user_api_scopes,
        resources=body.resources,
    )
    return app_info(apps, record, Privilege.CAN_MANAGE)


@router.get(PREFIX, name="list_apps")
def list_apps(request: Request, caller: Caller = Depends(authenticated(READ))) -> dict[str, Any]:
    apps = apps_of(platform_of(request))
    out = []
    for record in apps.store.all():
        level = apps.level(caller, record)
        if level is not None:
            out.append(app_info(apps, record, level))
    return {"apps": out}


@router.get(PREFIX + "/{name}", name="get_app")
def get_app(
    request: Request, name: str, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    apps = apps_of(platform_of(request))
    record = apps.require(caller, name, Privilege.CAN_USE)
    return app_info(apps, record, apps.level(caller, record))


@router.patch(PREFIX + "/{name}", name="update_app")
def update_app(
    request: Request, name: str, body: UpdateApp, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    apps = apps_of(platform_of(request))
    request.state.audit_params = {
        "user_api_scopes": body.user_api_scopes,
        "resources": [r.name for r in body.resources] if body.resources is not None else None,
    }
    if body.name is not None and body.name != name:
        raise PermissionDenied("An app cannot be renamed; create a new one.")
    record = apps.update(
        caller,
        name,
        description=body.description,
        user_api_scopes=body.user_api_scopes,
        resources=body.resources,
    )
    return app_info(apps, record, Privilege.CAN_MANAGE)


@router.delete(PREFIX + "/{name}", name="delete_app")
def delete_app(
    request: Request, name: str, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    apps = apps_of(platform_of(request))
    record = apps.require(caller, name, Privilege.CAN_MANAGE)
    info = app_info(apps, record, Privilege.CAN_MANAGE)
    apps.delete(caller, name)
    return info


@router.post(PREFIX + "/{name}/deployments", name="deploy_app")
def deploy_app(
    request: Request,
    name: str,
    body: CreateDeployment,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    apps = apps_of(platform_of(request))
    request.state.audit_params = {"source_code_path": body.source_code_path, "mode": body.mode}
    return deployment_info(apps.deploy(caller, name, body.source_code_path, body.mode))


@router.get(PREFIX + "/{name}/deployments", name="list_app_deployments")
def list_deployments(
    request: Request, name: str, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    apps = apps_of(platform_of(request))
    record = apps.require(caller, name, Privilege.CAN_MANAGE)
    return {"app_deployments": [deployment_info(d) for d in apps.store.deployments(record)]}


@router.get(PREFIX + "/{name}/deployments/{deployment_id}", name="get_app_deployment")
def get_deployment(
    request: Request,
    name: str,
    deployment_id: str,
    caller: Caller = Depends(authenticated(READ)),
) -> dict[str, Any]:
    apps = apps_of(platform_of(request))
    record = apps.require(caller, name, Privilege.CAN_MANAGE)
    return deployment_info(apps.store.deployment(record, deployment_id))


@router.post(PREFIX + "/{name}/start", name="start_app")
def start_app(
    request: Request, name: str, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    apps = apps_of(platform_of(request))
    return app_info(apps, apps.start_app(caller, name), Privilege.CAN_MANAGE)


@router.post(PREFIX + "/{name}/stop", name="stop_app")
def stop_app(
    request: Request, name: str, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    apps = apps_of(platform_of(request))
    return app_info(apps, apps.stop_app(caller, name), Privilege.CAN_MANAGE)


@router.get(PREFIX + "/{name}/logs", name="get_app_logs")
def get_logs(
    request: Request,
    name: str,
    offset: int = Query(default=-65536, ge=-(2**40), le=2**40),
    max_bytes: int = Query(default=65536, ge=1, le=4 * 1024 * 1024),
    caller: Caller = Depends(authenticated(READ)),
) -> dict[str, Any]:
    """The app's output (stdout and stderr, and its installs); ``offset`` < 0 counts from
    the end. Poll with ``next_offset`` to follow."""
    apps = apps_of(platform_of(request))
    apps.require(caller, name, Privilege.CAN_MANAGE)
    content, next_offset = apps.read_logs(name, offset, max_bytes)
    return {"content": content, "next_offset": next_offset}


# -- permissions ------------------------------------------------------------------------------

PERMISSIONS = "/api/2.0/permissions/apps/{name}"


@router.get(PERMISSIONS, name="get_app_permissions")
def get_permissions(
    request: Request, name: str, caller: Caller = Depends(authenticated("iam.access-control:read"))
) -> dict[str, Any]:
    platform = platform_of(request)
    record = apps_of(platform).require(caller, name, Privilege.CAN_USE)
    return acl_document(platform, record, caller)


@router.get(PERMISSIONS + "/permissionLevels", name="get_app_permission_levels")
def get_permission_levels(
    request: Request, name: str, caller: Caller = Depends(authenticated("iam.access-control:read"))
) -> dict[str, Any]:
    apps_of(platform_of(request)).require(caller, name, Privilege.CAN_USE)
    return {
        "permission_levels": [
            {"permission_level": level.value, "description": LEVEL_DESCRIPTIONS[level]}
            for level in LEVELS
        ]
    }


def _change(
    request: Request, name: str, body: PermissionsRequest, caller: Caller, replace: bool
) -> dict[str, Any]:
    platform = platform_of(request)
    request.state.audit_params = {
        "object_id": f"/apps/{name}",
        "access_control_list": [e.model_dump(exclude_none=True) for e in body.access_control_list],
    }
    record = apps_of(platform).require(caller, name, Privilege.CAN_MANAGE)
    wanted = resolve_entries(platform, body.access_control_list)
    if replace:
        platform.governance.replace_grants(record.securable_id, wanted)
    else:
        changes = [
            GrantChange(
                principal_id,
                add=tuple(levels),
                remove=tuple(level for level in LEVELS if level not in levels),
            )
            for principal_id, levels in wanted.items()
        ]
        platform.governance.update_grants(record.securable_id, changes)
    return acl_document(platform, record, caller)


@router.patch(PERMISSIONS, name="update_app_permissions")
def patch_permissions(
    request: Request,
    name: str,
    body: PermissionsRequest,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    return _change(request, name, body, caller, replace=False)


@router.put(PERMISSIONS, name="set_app_permissions")
def put_permissions(
    request: Request,
    name: str,
    body: PermissionsRequest,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    return _change(request, name, body, caller, replace=True)
