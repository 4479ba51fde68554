"""Secrets: ``/api/2.0/secrets/{scopes,acls}/…``, ``put``, ``delete``, ``list``.

There is deliberately no ``get``: a secret's value never leaves the server through any API.
Values are read from the body only, never put in audit parameters, and never logged.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import InvalidRequest
from bastion.identity.model import Caller
from bastion.secrets import SecretPermission, secrets_of
from bastion.server.auth import authenticated, platform_of

router = APIRouter(prefix="/api/2.0/secrets", tags=["secrets"])

READ = "secrets:read"
WRITE = "secrets"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateScope(_Strict):
    scope: str
    initial_manage_principal: str | None = None
    scope_backend_type: str | None = None


class ScopeRef(_Strict):
    scope: str


class PutSecret(_Strict):
    scope: str
    key: str
    string_value: str | None = Field(default=None, repr=False)
    bytes_value: str | None = Field(default=None, repr=False)


class SecretRef(_Strict):
    scope: str
    key: str


class PutAcl(_Strict):
    scope: str
    principal: str
    permission: str


class AclRef(_Strict):
    scope: str
    principal: str


def _principal_id(request: Request, name: str) -> int:
    principal = platform_of(request).authenticator.principal(name)
    if principal is None:
        raise InvalidRequest(f"Principal {name!r} does not exist.")
    return principal.id


@router.post("/scopes/create", name="create_secret_scope")
def create_scope(
    request: Request, body: CreateScope, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    if body.scope_backend_type not in (None, "DATABRICKS", "BASTION"):
        raise InvalidRequest("Only Bastion-backed secret scopes are supported.")
    request.state.audit_params = {"scope": body.scope}
    manager = (
        _principal_id(request, body.initial_manage_principal)
        if body.initial_manage_principal
        else None
    )
    secrets_of(platform_of(request)).create_scope(caller, body.scope, manager)
    return {}


@router.post("/scopes/delete", name="delete_secret_scope")
def delete_scope(
    request: Request, body: ScopeRef, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    request.state.audit_params = {"scope": body.scope}
    secrets_of(platform_of(request)).delete_scope(caller, body.scope)
    return {}


@router.get("/scopes/list", name="list_secret_scopes")
def list_scopes(request: Request, caller: Caller = Depends(authenticated(READ))) -> dict[str, Any]:
    scopes = secrets_of(platform_of(request)).list_scopes(caller)
    return {"scopes": [{"name": s.name, "backend_type": "BASTION"} for s in scopes]}


@router.post("/put", name="put_secret")
def put_secret(
    request: Request, body: PutSecret, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    request.state.audit_params = {"scope": body.scope, "key": body.key}
    if (body.string_value is None) == (body.bytes_value is None):
        raise InvalidRequest("Give exactly one of 'string_value' and 'bytes_value'.")
    value: str | bytes
    if body.bytes_value is not None:
        try:
            value = base64.b64decode(body.bytes_value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("'bytes_value' must be base64.") from None
    else:
        assert body.string_value is not None
        value = body.string_value
    secrets_of(platform_of(request)).put(caller, body.scope, body.key, value)
    return {}


@router.post("/delete", name="delete_secret")
def delete_secret(
    request: Request, body: SecretRef, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    request.state.audit_params = {"scope": body.scope, "key": body.key}
    secrets_of(platform_of(request)).delete(caller, body.scope, body.key)
    return {}


@router.get("/list", name="list_secrets")
def list_secrets(
    request: Request, scope: str, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    keys = secrets_of(platform_of(request)).list_keys(caller, scope)
    return {
        "secrets": [
            {"key": k.key, "last_updated_timestamp": k.last_updated_timestamp} for k in keys
        ]
    }


@router.post("/acls/put", name="put_secret_acl")
def put_acl(
    request: Request, body: PutAcl, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    request.state.audit_params = body.model_dump()
    secrets_of(platform_of(request)).put_acl(
        caller,
        body.scope,
        _principal_id(request, body.principal),
        SecretPermission.parse(body.permission),
    )
    return {}


@router.post("/acls/delete", name="delete_secret_acl")
def delete_acl(
    request: Request, body: AclRef, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    request.state.audit_params = body.model_dump()
    secrets_of(platform_of(request)).delete_acl(
        caller, body.scope, _principal_id(request, body.principal)
    )
    return {}


@router.get("/acls/list", name="list_secret_acls")
def list_acls(
    request: Request, scope: str, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    acls = secrets_of(platform_of(request)).list_acls(caller, scope)
    return {"items": [{"principal": a.principal, "permission": a.permission.value} for a in acls]}


@router.get("/acls/get", name="get_secret_acl")
def get_acl(
    request: Request, scope: str, principal: str, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    for acl in secrets_of(platform_of(request)).list_acls(caller, scope):
        if acl.principal == principal:
            return {"principal": acl.principal, "permission": acl.permission.value}
    raise InvalidRequest(f"Principal {principal!r} has no ACL on secret scope {scope!r}.")
