"""Personal access tokens: ``/api/2.0/token/{create,list,delete}`` for the caller's own tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import InvalidRequest
from bastion.identity.credentials import PAT_PREFIX
from bastion.identity.model import Caller, TokenRecord
from bastion.server.auth import authenticated, platform_of

router = APIRouter(prefix="/api/2.0/token", tags=["accounts"])
tokens_scope = authenticated("iam.tokens")


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lifetime_seconds: int | None = Field(default=None, ge=1)
    comment: str | None = Field(default=None, max_length=1000)
    scopes: list[str] | None = Field(default=None, max_length=50)


class DeleteToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token_id: str = Field(min_length=1, max_length=64)


def token_info(record: TokenRecord) -> dict[str, Any]:
    return {
        "token_id": record.token_id,
        "creation_time": record.created_at,
        "expiry_time": record.expires_at if record.expires_at is not None else -1,
        "comment": record.comment or "",
        "scopes": list(record.scopes) if record.scopes is not None else None,
    }


@router.post("/create", name="create_token")
def create_token(
    request: Request, body: CreateToken, caller: Caller = Depends(tokens_scope)
) -> dict[str, Any]:
    platform = platform_of(request)
    lifetime = body.lifetime_seconds
    maximum = platform.settings.max_token_lifetime_s
    if lifetime is not None and lifetime > maximum:
        raise InvalidRequest(f"lifetime_seconds may be at most {maximum}.")
    scopes = tuple(body.scopes) if body.scopes is not None else None
    if scopes is not None:
        for scope in scopes:
            if not scope or len(scope) > 100 or any(c.isspace() for c in scope):
                raise InvalidRequest(f"Invalid scope {scope!r}.")
        # A token cannot be wider than the credential that creates it.
        if caller.scopes is not None and not all(caller.has_scope(s) for s in scopes):
            raise InvalidRequest("A token's scopes must be within your own credential's scopes.")
    elif caller.scopes is not None:
        scopes = tuple(sorted(caller.scopes))
    request.state.audit_params = {"lifetime_seconds": lifetime, "comment": body.comment}
    raw, record = platform.identity.create_token(
        caller.principal_id,
        kind="pat",
        prefix=PAT_PREFIX,
        lifetime_s=lifetime or None,
        comment=body.comment,
        scopes=scopes,
        parent_id=caller.credential_id,  # revoking the credential used here revokes this one
    )
    return {"token_value": raw, "token_info": token_info(record)}


@router.get("/list", name="list_tokens")
def list_tokens(request: Request, caller: Caller = Depends(tokens_scope)) -> dict[str, Any]:
    records = platform_of(request).identity.list_tokens(caller.principal_id)
    return {"token_infos": [token_info(r) for r in records]}


@router.post("/delete", name="revoke_token")
def delete_token(
    request: Request, body: DeleteToken, caller: Caller = Depends(tokens_scope)
) -> dict[str, Any]:
    request.state.audit_params = {"token_id": body.token_id}
    platform_of(request).identity.revoke_token(body.token_id, caller.principal_id)
    return {}
