"""Bundle deployment state and locks: ``/api/2.0/bastion/bundles/{bundle}/deployments/{key}``.

The CLI (``bastion bundle deploy``) keeps a bundle's state here, so everyone deploying the same
bundle and target sees one state, and takes the lock around every deploy and destroy.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.bundles.deployments import Deployment, DeploymentStore
from bastion.errors import InvalidRequest, NotFound
from bastion.identity.model import Caller
from bastion.server.auth import authenticated, platform_of

router = APIRouter(prefix="/api/2.0/bastion/bundles", tags=["bundles"])
WRITE = authenticated("bundles")
READ = authenticated("bundles:read")
_NAME = re.compile(r"^[A-Za-z0-9_.@\-]{1,255}$")


class LockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holder: str = Field(min_length=8, max_length=64)
    ttl_s: int = Field(default=600, ge=1, le=3600)


class StateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holder: str = Field(min_length=8, max_length=64)
    version: int = Field(ge=0, le=2**31 - 1)
    state: dict[str, Any]


def _store(request: Request) -> DeploymentStore:
    platform = platform_of(request)
    store = getattr(platform, "bundle_deployments", None)
    if not isinstance(store, DeploymentStore):
        store = DeploymentStore(platform.metastore, platform.clock)
        platform.bundle_deployments = store  # type: ignore[attr-defined]
    return store


def _names(bundle: str, target: str) -> tuple[str, str]:
    for value in (bundle, target):
        if not _NAME.match(value):
            raise InvalidRequest(f"Invalid bundle or target name {value[:64]!r}.")
    return bundle, target


def _out(deployment: Deployment) -> dict[str, Any]:
    return {
        "bundle_name": deployment.bundle_name,
        "target": deployment.target_key,
        "state": deployment.state,
        "version": deployment.version,
        "locked_by": deployment.lock_principal,
        "lock_expires_at": deployment.lock_expires_at,
        "updated_at": deployment.updated_at,
        "updated_by": deployment.updated_by,
    }


PATH = "/{bundle}/deployments/{target}"


@router.get(PATH, name="get_bundle_deployment")
def get_deployment(
    request: Request, bundle: str, target: str, caller: Caller = Depends(READ)
) -> dict[str, Any]:
    found = _store(request).get(caller, *_names(bundle, target))
    if found is None:
        raise NotFound(f"Bundle '{bundle}' has not been deployed to '{target}'.")
    return _out(found)


@router.post(PATH + "/lock", name="lock_bundle_deployment")
def lock(
    request: Request, bundle: str, target: str, body: LockBody, caller: Caller = Depends(WRITE)
) -> dict[str, Any]:
    return _out(_store(request).lock(caller, *_names(bundle, target), body.holder, body.ttl_s))


@router.delete(PATH + "/lock", name="unlock_bundle_deployment")
def unlock(
    request: Request, bundle: str, target: str, holder: str, caller: Caller = Depends(WRITE)
) -> dict[str, Any]:
    _store(request).unlock(caller, *_names(bundle, target), holder)
    return {}


@router.put(PATH + "/state", name="save_bundle_deployment")
def save(
    request: Request, bundle: str, target: str, body: StateBody, caller: Caller = Depends(WRITE)
) -> dict[str, Any]:
    saved = _store(request).save(
        caller, *_names(bundle, target), holder=body.holder, version=body.version, state=body.state
    )
    return _out(saved)


@router.delete(PATH, name="delete_bundle_deployment")
def delete(
    request: Request, bundle: str, target: str, holder: str, caller: Caller = Depends(WRITE)
) -> dict[str, Any]:
    _store(request).delete(caller, *_names(bundle, target), holder)
    return {}
