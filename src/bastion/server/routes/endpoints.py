"""Serving endpoints: ``/api/2.0/serving-endpoints[/{name}[/config|/ai-gateway|/tags]]`` and
their ACLs at ``/api/2.0/permissions/serving-endpoints/{name}``.

Creating an endpoint needs EXECUTE on every served model and READ on every secret scope it
references; the creator owns it (CAN_MANAGE). Viewing needs CAN_VIEW, changing CAN_MANAGE.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import BastionError, InvalidRequest, PermissionDenied
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType, parse_name
from bastion.governance.store import GrantChange
from bastion.identity.model import Caller
from bastion.platform import Platform
from bastion.server.auth import authenticated, platform_of
from bastion.serving.control import EndpointRecord, serving_of
from bastion.serving.control.config import (
    AiGatewayConfig,
    EndpointCoreConfig,
    EndpointTag,
    validate_ai_gateway,
    validate_core_config,
)
from bastion.serving.control.payload import (
    bind_endpoint_payload,
    check_payload_target,
    endpoint_owner,
)
from bastion.serving.control.permissions import (
    LEVEL_DESCRIPTIONS,
    LEVELS,
    PermissionsRequest,
    acl_document,
    object_id,
    resolve_entries,
)

router = APIRouter(tags=["serving"])

READ = "serving.serving-endpoints:read"
WRITE = "serving.serving-endpoints"


class CreateEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    config: EndpointCoreConfig
    ai_gateway: AiGatewayConfig | None = None
    tags: list[EndpointTag] | None = Field(default=None, max_length=50)
    description: str | None = Field(default=None, max_length=10_000)
    route_optimized: bool | None = None
    budget_policy_id: str | None = None
    rate_limits: list[dict[str, Any]] | None = None
    email_notifications: dict[str, Any] | None = None
    telemetry_config: dict[str, Any] | None = None


class PatchTags(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add_tags: list[EndpointTag] | None = Field(default=None, max_length=50)
    delete_tags: list[str] | None = Field(default=None, max_length=50)


def _name(name: str) -> str:
    return parse_name(SecurableType.SERVING_ENDPOINT, name)


def _same_name(name: str, config: EndpointCoreConfig) -> None:
    """``config.name``, which databricks-sdk sends, may only repeat the endpoint's name."""
    if config.name is not None and config.name != name:
        raise InvalidRequest(
            f"config.name {config.name!r} differs from the endpoint's name {name!r}; leave it "
            "unset or repeat the name."
        )


def _level(platform: Platform, caller: Caller, record: EndpointRecord) -> Privilege | None:
    node = platform.authorizer.node(SecurableType.SERVING_ENDPOINT, record.name)
    held = platform.authorizer.effective(caller, node)
    for level in reversed(LEVELS):
        if level in held:
            return level
    return None


def _require(
    platform: Platform, caller: Caller, record: EndpointRecord, needed: Privilege
) -> Privilege:
    level = _level(platform, caller, record)
    if level is None or LEVELS.index(level) < LEVELS.index(needed):
        raise PermissionDenied(
            f"User {caller.name} does not have {needed.value} on serving endpoint '{record.name}'."
        )
    return level


def endpoint_info(
    platform: Platform, record: EndpointRecord, level: Privilege | None
) -> dict[str, Any]:
    """``ServingEndpointDetailed``: config with per-entity state, ai_gateway, tags, state."""
    serving = serving_of(platform)
    state = serving.router.endpoint_state(record.name)
    entities = []
    for entity in record.config.get("served_entities", []):
        detail = dict(entity)
        entity_state = state.entities.get(entity["name"])
        if entity_state is not None:
            detail["state"] = {
                "deployment": entity_state.deployment,
                **(
                    {"deployment_state_message": entity_state.message}
                    if entity_state.message
                    else {}
                ),
            }
        detail["creator"] = record.creator
        entities.append(detail)
    config: dict[str, Any] = {
        "served_entities": entities,
        "traffic_config": record.config.get("traffic_config", {"routes": []}),
        "config_version": record.config_version,
    }
    if "auto_capture_config" in record.config:
        config["auto_capture_config"] = record.config["auto_capture_config"]
    out: dict[str, Any] = {
        "name": record.name,
        "id": str(record.id),
        "creator": record.creator,
        "creation_timestamp": record.created_at,
        "last_updated_timestamp": record.updated_at,
        "description": record.description,
        "state": state.as_dict(),
        "config": config,
        "ai_gateway": record.ai_gateway,
        "tags": [{"key": k, "value": v} for k, v in sorted(record.tags.items())],
        "task": "llm/v1/chat",
        "query_url": serving.query_url(record.name),
    }
    if level is not None:
        out["permission_level"] = level.value
    return out


@router.post("/api/2.0/serving-endpoints", name="create_serving_endpoint")
def create_endpoint(
    request: Request, body: CreateEndpoint, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    platform = platform_of(request)
    name = _name(body.name)
    request.state.audit_params = {"name": name}
    _same_name(name, body.config)
    config = validate_core_config(platform, caller, body.config)
    ai_gateway = body.ai_gateway
    if body.rate_limits:  # the legacy top-level field: the same limits, enforced the same way
        if ai_gateway is not None and ai_gateway.rate_limits:
            raise InvalidRequest(
                "Give rate limits in 'ai_gateway.rate_limits' or 'rate_limits', not both."
            )
        ai_gateway = (ai_gateway or AiGatewayConfig()).model_copy(
            update={"rate_limits": body.rate_limits}
        )
    gateway = validate_ai_gateway(platform, caller, name, ai_gateway)
    check_payload_target(
        platform, name, gateway, config, endpoint_id=None, owner_id=caller.principal_id
    )
    serving = serving_of(platform)
    record = serving.endpoints.create(
        name,
        config=config,
        ai_gateway=gateway,
        tags={t.key: t.value or "" for t in body.tags or []},
        description=body.description,
        owner_id=caller.principal_id,
        creator=caller.name,
    )
    try:
        bind_endpoint_payload(platform, record)
    except BastionError:  # taken between the check and now: nothing half-created stays
        serving.endpoints.delete(record.name)
        raise
    return endpoint_info(platform, record, Privilege.CAN_MANAGE)


@router.get("/api/2.0/serving-endpoints", name="list_serving_endpoints")
def list_endpoints(
    request: Request, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    platform = platform_of(request)
    out = []
    for record in serving_of(platform).endpoints.all():
        level = _level(platform, caller, record)
        if level is not None:
            out.append(endpoint_info(platform, record, level))
    return {"endpoints": out}


@router.get("/api/2.0/serving-endpoints/{name}", name="get_serving_endpoint")
def get_endpoint(
    request: Request, name: str, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    platform = platform_of(request)
    record = serving_of(platform).endpoints.get(_name(name))
    level = _require(platform, caller, record, Privilege.CAN_VIEW)
    return endpoint_info(platform, record, level)


@router.put("/api/2.0/serving-endpoints/{name}/config", name="update_serving_endpoint_config")
def update_config(
    request: Request,
    name: str,
    body: EndpointCoreConfig,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    platform = platform_of(request)
    serving = serving_of(platform)
    record = serving.endpoints.get(_name(name))
    level = _require(platform, caller, record, Privilege.CAN_MANAGE)
    _same_name(record.name, body)
    config = validate_core_config(platform, caller, body)
    owner = endpoint_owner(platform, record)
    check_payload_target(
        platform, record.name, record.ai_gateway, config, endpoint_id=record.id, owner_id=owner
    )
    record = serving.endpoints.update(record.name, config=config, updated_by=caller.principal_id)
    bind_endpoint_payload(platform, record)
    return endpoint_info(platform, record, level)


@router.put("/api/2.0/serving-endpoints/{name}/ai-gateway", name="put_serving_endpoint_ai_gateway")
def put_ai_gateway(
    request: Request,
    name: str,
    body: AiGatewayConfig,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    platform = platform_of(request)
    serving = serving_of(platform)
    record = serving.endpoints.get(_name(name))
    _require(platform, caller, record, Privilege.CAN_MANAGE)
    gateway = validate_ai_gateway(platform, caller, record.name, body)
    owner = endpoint_owner(platform, record)
    check_payload_target(
        platform, record.name, gateway, record.config, endpoint_id=record.id, owner_id=owner
    )
    record = serving.endpoints.update(record.name, ai_gateway=gateway)
    bind_endpoint_payload(platform, record)
    return record.ai_gateway


@router.patch("/api/2.0/serving-endpoints/{name}/tags", name="patch_serving_endpoint_tags")
def patch_tags(
    request: Request,
    name: str,
    body: PatchTags,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    platform = platform_of(request)
    serving = serving_of(platform)
    record = serving.endpoints.get(_name(name))
    _require(platform, caller, record, Privilege.CAN_MANAGE)
    record = serving.endpoints.update(
        record.name,
        set_tags={t.key: t.value or "" for t in body.add_tags or []},
        delete_tags=body.delete_tags,
    )
    return {"tags": [{"key": k, "value": v} for k, v in sorted(record.tags.items())]}


@router.delete("/api/2.0/serving-endpoints/{name}", name="delete_serving_endpoint")
def delete_endpoint(
    request: Request, name: str, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    platform = platform_of(request)
    serving = serving_of(platform)
    record = serving.endpoints.get(_name(name))
    _require(platform, caller, record, Privilege.CAN_MANAGE)
    serving.endpoints.delete(record.name)
    return {}


# -- permissions ------------------------------------------------------------------------------

PERMISSIONS = "/api/2.0/permissions/serving-endpoints/{name}"


@router.get(PERMISSIONS, name="get_serving_endpoint_permissions")
def get_permissions(
    request: Request, name: str, caller: Caller = Depends(authenticated("iam.access-control:read"))
) -> dict[str, Any]:
    platform = platform_of(request)
    record = serving_of(platform).endpoints.find(name)
    _require(platform, caller, record, Privilege.CAN_VIEW)
    return acl_document(platform, record, caller)


@router.get(PERMISSIONS + "/permissionLevels", name="get_serving_endpoint_permission_levels")
def get_permission_levels(
    request: Request, name: str, caller: Caller = Depends(authenticated("iam.access-control:read"))
) -> dict[str, Any]:
    platform = platform_of(request)
    record = serving_of(platform).endpoints.find(name)
    _require(platform, caller, record, Privilege.CAN_VIEW)
    return {
        "permission_levels": [
            {"permission_level": level.value, "description": LEVEL_DESCRIPTIONS[level]}
            for level in LEVELS
        ]
    }


def _change_permissions(
    request: Request, name: str, body: PermissionsRequest, caller: Caller, replace: bool
) -> dict[str, Any]:
    platform = platform_of(request)
    record = serving_of(platform).endpoints.find(name)
    request.state.audit_params = {
        "object_id": object_id(record),
        "access_control_list": [e.model_dump(exclude_none=True) for e in body.access_control_list],
    }
    _require(platform, caller, record, Privilege.CAN_MANAGE)
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


@router.patch(PERMISSIONS, name="update_serving_endpoint_permissions")
def patch_permissions(
    request: Request,
    name: str,
    body: PermissionsRequest,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    """Add to (or change levels in) the access control list."""
    return _change_permissions(request, name, body, caller, replace=False)


@router.put(PERMISSIONS, name="set_serving_endpoint_permissions")
def put_permissions(
    request: Request,
    name: str,
    body: PermissionsRequest,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    """Replace the access control list (the owner keeps CAN_MANAGE)."""
    return _change_permissions(request, name, body, caller, replace=True)
