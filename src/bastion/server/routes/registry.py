"""Registered models: ``/api/2.1/unity-catalog/models``, versions and ``aliases/{alias}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.egress import require_egress
from bastion.errors import InvalidRequest, PermissionDenied
from bastion.fields import MAX_INT32
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType, parse_name, validate_part
from bastion.identity.model import Caller
from bastion.platform import Platform
from bastion.registry import (
    ModelVersion,
    RegisteredModel,
    parse_external_model,
    registry_of,
    validate_alias,
)
from bastion.secrets.usage import require_secret_use
from bastion.server.auth import authenticated, platform_of
from bastion.server.routes.catalogs import METASTORE_ID, UpdateSecurable, update_securable
from bastion.staging import resolve_source, staging_of

router = APIRouter(prefix="/api/2.1/unity-catalog", tags=["unityCatalog"])

READ = "catalog.models:read"
VersionNumber = Path(ge=1, le=MAX_INT32, description="A version number of the model.")
WRITE = "catalog.models"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tag(_Strict):
    key: str = Field(min_length=1, max_length=250)
    value: str = Field(default="", max_length=4096)


class CreateModel(_Strict):
    name: str
    catalog_name: str
    schema_name: str
    comment: str | None = Field(default=None, max_length=10_000)
    storage_location: str | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)


class UpdateModel(_Strict):
    comment: str | None = Field(default=None, max_length=10_000)
    owner: str | None = None
    new_name: str | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    delete_tags: list[str] | None = Field(default=None, max_length=50)


class CreateVersion(_Strict):
    catalog_name: str
    schema_name: str
    model_name: str
    source: str | None = Field(default=None, max_length=4096)
    external_model: dict[str, Any] | None = None
    run_id: str | None = Field(default=None, max_length=255)
    comment: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] | None = Field(default=None, max_length=50)


class UpdateVersion(_Strict):
    comment: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] | None = Field(default=None, max_length=50)
    delete_tags: list[str] | None = Field(default=None, max_length=50)


class SetAlias(_Strict):
    version_num: int = Field(ge=1, le=MAX_INT32)


def _tags(tags: list[Tag] | None) -> dict[str, str]:
    return {t.key: t.value for t in tags or []}


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(tags.items())]


def _alias_list(full_name: str, aliases: dict[str, int]) -> list[dict[str, Any]]:
    catalog, schema, model = full_name.split(".")
    return [
        {
            "alias_name": alias,
            "version_num": version,
            "catalog_name": catalog,
            "schema_name": schema,
            "model_name": model,
        }
        for alias, version in sorted(aliases.items())
    ]


def model_info(model: RegisteredModel) -> dict[str, Any]:
    info = model.info
    catalog, schema, name = info.full_name.split(".")
    return {
        "name": name,
        "catalog_name": catalog,
        "schema_name": schema,
        "full_name": info.full_name,
        "comment": info.comment,
        "owner": info.owner,
        "aliases": _alias_list(info.full_name, model.aliases),
        "tags": _tag_list(model.tags),
        "metastore_id": METASTORE_ID,
        "storage_location": None,
        "created_at": info.created_at,
        "created_by": info.created_by,
        "updated_at": info.updated_at,
        "updated_by": info.updated_by,
        "id": str(info.id),
    }


def version_info(version: ModelVersion) -> dict[str, Any]:
    catalog, schema, name = version.model_name.split(".")
    out: dict[str, Any] = {
        "model_name": name,
        "catalog_name": catalog,
        "schema_name": schema,
        "full_name": version.model_name,
        "version": version.version,
        "status": version.status.value,
        "status_message": version.status_message,
        "source": version.source,
        "artifact_type": version.artifact_kind.value,
        "storage_location": version.storage_location,
        "content_hash": version.content_hash,
        "run_id": version.run_id,
        "comment": version.comment,
        "tags": _tag_list(version.tags),
        "aliases": _alias_list(version.model_name, {a: version.version for a in version.aliases}),
        "metastore_id": METASTORE_ID,
        "created_at": version.created_at,
        "created_by": version.created_by,
        "updated_at": version.updated_at,
        "updated_by": version.updated_by,
        "id": str(version.id),
    }
    if version.external_model is not None:
        out["external_model"] = version.external_model.as_config()
    return out


def _model_name(full_name: str) -> str:
    return parse_name(SecurableType.MODEL, full_name)


def _require_manage(platform: Platform, caller: Caller, full_name: str) -> None:
    node = platform.authorizer.node(SecurableType.MODEL, full_name)
    if not platform.authorizer.has(caller, Privilege.MANAGE, node):
        raise PermissionDenied(
            f"User {caller.name} may not modify registered model '{full_name}'; "
            "that needs ownership or MANAGE."
        )


def _require_visible(platform: Platform, caller: Caller, full_name: str) -> None:
    node = platform.authorizer.node(SecurableType.MODEL, full_name)
    if not platform.authorizer.visible(caller, node):
        raise PermissionDenied(
            f"User {caller.name} does not have any privilege on registered model '{full_name}'."
        )


# -- models -----------------------------------------------------------------------------------


@router.post("/models", name="create_registered_model")
def create_model(
    request: Request, body: CreateModel, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    platform = platform_of(request)
    if body.storage_location is not None:
        raise InvalidRequest("Models choose their own storage location under BASTION_HOME.")
    schema = parse_name(SecurableType.SCHEMA, f"{body.catalog_name}.{body.schema_name}")
    full_name = f"{schema}.{validate_part(body.name, 'model name')}"
    request.state.audit_params = {"full_name": full_name}
    platform.authorizer.require(caller, Privilege.CREATE_MODEL, SecurableType.SCHEMA, schema)
    model = registry_of(platform).create_model(
        full_name,
        owner_id=caller.principal_id,
        created_by=caller.name,
        comment=body.comment,
        tags=_tags(body.tags),
    )
    return model_info(model)


@router.get("/models", name="list_registered_models")
def list_models(
    request: Request,
    catalog_name: str,
    schema_name: str,
    caller: Caller = Depends(authenticated(READ)),
) -> dict[str, Any]:
    platform = platform_of(request)
    schema = parse_name(SecurableType.SCHEMA, f"{catalog_name}.{schema_name}")
    platform.authorizer.require(caller, Privilege.USE_SCHEMA, SecurableType.SCHEMA, schema)
    models = [
        m
        for m in registry_of(platform).list_models(schema)
        if platform.authorizer.visible(
            caller, platform.authorizer.node(SecurableType.MODEL, m.full_name)
        )
    ]
    return {"registered_models": [model_info(m) for m in models]}


@router.get("/models/{full_name}", name="get_registered_model")
def get_model(
    request: Request, full_name: str, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    platform = platform_of(request)
    name = _model_name(full_name)
    _require_visible(platform, caller, name)
    return model_info(registry_of(platform).get_model(name))


@router.patch("/models/{full_name}", name="update_registered_model")
def update_model(
    request: Request,
    full_name: str,
    body: UpdateModel,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    platform = platform_of(request)
    name = _model_name(full_name)
    registry = registry_of(platform)
    if body.comment is not None or body.owner is not None or body.new_name is not None:
        update_securable(
            platform,
            caller,
            SecurableType.MODEL,
            name,
            UpdateSecurable(comment=body.comment, owner=body.owner, new_name=body.new_name),
        )
    if body.tags or body.delete_tags:
        _require_manage(platform, caller, name)
        registry.set_model_tags(name, caller.name, _tags(body.tags), body.delete_tags or [])
    return model_info(registry.get_model(name))


@router.delete("/models/{full_name}", name="delete_registered_model")
def delete_model(
    request: Request, full_name: str, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    platform = platform_of(request)
    name = _model_name(full_name)
    node = platform.authorizer.node(SecurableType.MODEL, name)
    if not (caller.is_admin or platform.authorizer.owns(caller, node)):
        raise PermissionDenied(f"Only the owner may delete registered model '{name}'.")
    registry_of(platform).delete_model(name)
    return {}


# -- versions ---------------------------------------------------------------------------------


@router.post("/models/versions", name="create_model_version")
def create_version(
    request: Request, body: CreateVersion, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    """Register a version from the caller's staging area (``staging:<path>``: a GGUF file or
    an MLflow model folder they uploaded), a configured source root, or an external-model
    config. Needs ownership of the model or MANAGE on it."""
    platform = platform_of(request)
    name = _model_name(f"{body.catalog_name}.{body.schema_name}.{body.model_name}")
    request.state.audit_params = {"full_name": name, "source": body.source or "external_model"}
    _require_manage(platform, caller, name)
    if body.external_model is not None:  # its URL and key are the creator's to give
        external = parse_external_model(body.external_model)
        require_egress(platform, caller.is_admin, [external.base_url])
        if external.api_key is not None:
            require_secret_use(platform, caller, external.api_key)
    source = None
    if body.source is not None:
        source = resolve_source(
            staging_of(platform),
            caller.principal_id,
            body.source,
            roots=platform.settings.model_source_roots,
            home=platform.settings.home,
        )
    version = registry_of(platform).create_version(
        name,
        created_by=caller.name,
        source=source,
        source_label=body.source,
        external_model=body.external_model,
        comment=body.comment,
        run_id=body.run_id,
        tags=_tags(body.tags),
    )
    return version_info(version)


@router.get("/models/{full_name}/versions", name="list_model_versions")
def list_versions(
    request: Request, full_name: str, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    platform = platform_of(request)
    name = _model_name(full_name)
    platform.authorizer.require(caller, Privilege.EXECUTE, SecurableType.MODEL, name)
    return {"model_versions": [version_info(v) for v in registry_of(platform).list_versions(name)]}


@router.get("/models/{full_name}/versions/{version}", name="get_model_version")
def get_version(
    request: Request,
    full_name: str,
    version: int = VersionNumber,
    caller: Caller = Depends(authenticated(READ)),
) -> dict[str, Any]:
    platform = platform_of(request)
    name = _model_name(full_name)
    platform.authorizer.require(caller, Privilege.EXECUTE, SecurableType.MODEL, name)
    return version_info(registry_of(platform).get_version(name, version))


@router.patch("/models/{full_name}/versions/{version}", name="update_model_version")
def update_version(
    request: Request,
    full_name: str,
    version: int = VersionNumber,
    body: UpdateVersion = Body(),
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    platform = platform_of(request)
    name = _model_name(full_name)
    _require_manage(platform, caller, name)
    updated = registry_of(platform).update_version(
        name,
        version,
        updated_by=caller.name,
        comment=body.comment,
        set_tags=_tags(body.tags),
        delete_tags=body.delete_tags,
    )
    return version_info(updated)


@router.delete("/models/{full_name}/versions/{version}", name="delete_model_version")
def delete_version(
    request: Request,
    full_name: str,
    version: int = VersionNumber,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    platform = platform_of(request)
    name = _model_name(full_name)
    _require_manage(platform, caller, name)
    registry_of(platform).delete_version(name, version)
    return {}


# -- aliases ----------------------------------------------------------------------------------


@router.put("/models/{full_name}/aliases/{alias}", name="set_registered_model_alias")
def set_alias(
    request: Request,
    full_name: str,
    alias: str,
    body: SetAlias,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    platform = platform_of(request)
    name = _model_name(full_name)
    alias = validate_alias(alias)
    request.state.audit_params = {"version_num": body.version_num}
    _require_manage(platform, caller, name)
    registry = registry_of(platform)
    target = registry.get_version(name, body.version_num).external_model
    if target is not None and target.api_key is not None:  # the alias puts it into service
        require_secret_use(platform, caller, target.api_key)
    registry.set_alias(name, alias, body.version_num)
    return _alias_list(name, {alias: body.version_num})[0]


@router.get("/models/{full_name}/aliases/{alias}", name="get_model_version_by_alias")
def get_alias(
    request: Request,
    full_name: str,
    alias: str,
    caller: Caller = Depends(authenticated(READ)),
) -> dict[str, Any]:
    platform = platform_of(request)
    name = _model_name(full_name)
    platform.authorizer.require(caller, Privilege.EXECUTE, SecurableType.MODEL, name)
    return version_info(registry_of(platform).resolve(name, "@" + validate_alias(alias)))


@router.delete("/models/{full_name}/aliases/{alias}", name="delete_registered_model_alias")
def delete_alias(
    request: Request,
    full_name: str,
    alias: str,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    platform = platform_of(request)
    name = _model_name(full_name)
    _require_manage(platform, caller, name)
    registry_of(platform).delete_alias(name, alias)
    return {}
