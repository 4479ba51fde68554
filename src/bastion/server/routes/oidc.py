"""OAuth 2.0 token endpoint: ``password``, ``client_credentials`` and ``refresh_token`` grants."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from bastion.errors import BastionError
from bastion.identity.credentials import REFRESH_PREFIX
from bastion.identity.model import ALL_SCOPES, PrincipalRecord
from bastion.server.auth import platform_of

router = APIRouter(tags=["accounts"])

_ALLOWED_FIELDS = {
    "grant_type",
    "username",
    "password",
    "client_id",
    "client_secret",
    "refresh_token",
    "scope",
}


def _oauth_error(status: int, error: str, description: str, code: str) -> JSONResponse:
    """RFC 6749 error fields, alongside Bastion's own ``error_code`` / ``message``."""
    return JSONResponse(
        {
            "error": error,
            "error_description": description,
            "error_code": code,
            "message": description,
        },
        status_code=status,
    )


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, secret = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, secret


@router.post("/oidc/v1/token", name="token_login")
async def token(request: Request) -> JSONResponse:
    platform = platform_of(request)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return _oauth_error(
            400,
            "invalid_request",
            "Send the token request as application/x-www-form-urlencoded.",
            "INVALID_PARAMETER_VALUE",
        )
    form = {k: str(v) for k, v in (await request.form()).items()}
    unknown = set(form) - _ALLOWED_FIELDS
    if unknown:
        return _oauth_error(
            400,
            "invalid_request",
            f"Unknown parameter(s): {', '.join(sorted(unknown))}.",
            "INVALID_PARAMETER_VALUE",
        )
    grant = form.get("grant_type", "")
    address = request.client.host if request.client else ""
    requested = tuple(form["scope"].split()) if form.get("scope") else None
    if requested is not None and ALL_SCOPES in requested:
        requested = None
    request.state.audit_params = {"grant_type": grant, "username": form.get("username", "")}

    principal: PrincipalRecord | None
    refresh: str | None = None
    session_id: str | None = None
    if grant == "password":
        name, password = form.get("username", ""), form.get("password", "")
        if not name or not password:
            return _oauth_error(
                400,
                "invalid_request",
                "username and password are required.",
                "INVALID_PARAMETER_VALUE",
            )
        request.state.audit_user = name
        platform.throttle.check(name, address)
        principal = platform.identity.check_password(name, password)
        if principal is None:
            platform.throttle.failed(name, address)
            return _oauth_error(
                401, "invalid_grant", "Invalid user name or password.", "UNAUTHENTICATED"
            )
        platform.throttle.succeeded(name, address)
    elif grant == "client_credentials":
        basic = _basic_credentials(request)
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        request.state.audit_user = client_id
        platform.throttle.check(client_id, address)
        principal = platform.identity.check_client_secret(client_id, secret)
        if principal is None:
            platform.throttle.failed(client_id, address)
            return _oauth_error(
                401, "invalid_client", "Invalid client credentials.", "UNAUTHENTICATED"
            )
        platform.throttle.succeeded(client_id, address)
    elif grant == "refresh_token":
        presented = form.get("refresh_token", "")
        record = platform.identity.find_token(presented) if presented else None
        now_ms = platform.clock.now() * 1000
        if record is not None and record.kind == "refresh" and record.revoked_at is not None:
            # A spent refresh token presented again: someone holds a copy. End the session.
            if record.session_id:
                platform.identity.end_session(record.session_id)
            record = None
        if (
            record is None
            or record.kind != "refresh"
            or (record.expires_at is not None and record.expires_at <= now_ms)
            or not record.session_id
            or not platform.identity.session_live(record.session_id, record.principal_id)
        ):
            return _oauth_error(
                400, "invalid_grant", "Invalid or expired refresh token.", "UNAUTHENTICATED"
            )
        # Refresh tokens rotate: the presented one is spent; the session goes on.
        platform.identity.rotate_refresh_token(record.token_id)
        session_id = record.session_id
        principal = platform.identity.get(record.principal_id)
        if not principal.active:
            return _oauth_error(400, "invalid_grant", "The user is disabled.", "UNAUTHENTICATED")
        requested = record.scopes if requested is None else requested
        if record.scopes is not None and not set(requested or ()) <= set(record.scopes):
            return _oauth_error(
                400,
                "invalid_scope",
                "Scopes may only narrow on refresh.",
                "INVALID_PARAMETER_VALUE",
            )
        platform.identity.extend_session(session_id, platform.settings.refresh_token_ttl_s)
        request.state.audit_user = principal.name
    else:
        return _oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type must be password, client_credentials or refresh_token.",
            "INVALID_PARAMETER_VALUE",
        )

    ttl = platform.settings.access_token_ttl_s
    if session_id is None:
        lifetime = platform.settings.refresh_token_ttl_s if grant == "password" else ttl
        session_id = platform.identity.start_session(
            principal.id, lifetime_s=lifetime, scopes=requested
        ).token_id
    access, _ = platform.codec.issue(principal.id, requested, ttl, session_id=session_id)
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": " ".join(requested) if requested is not None else ALL_SCOPES,
    }
    if grant in ("password", "refresh_token"):
        refresh, _record = platform.identity.create_token(
            principal.id,
            kind="refresh",
            prefix=REFRESH_PREFIX,
            lifetime_s=platform.settings.refresh_token_ttl_s,
            scopes=requested,
            parent_id=session_id,
            session_id=session_id,
        )
        body["refresh_token"] = refresh
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post("/oidc/v1/revoke", name="token_revoke")
async def revoke(request: Request) -> Response:
    """RFC 7009 token revocation: an access or refresh token ends its whole login session
    (every access and refresh token of that login, and tokens created through it).

    As the RFC requires, an unknown or already revoked token is answered 200 too.
    """
    platform = platform_of(request)
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _oauth_error(
            400,
            "invalid_request",
            "Send the revocation request as application/x-www-form-urlencoded.",
            "INVALID_PARAMETER_VALUE",
        )
    form = {k: str(v) for k, v in (await request.form()).items()}
    unknown = set(form) - {"token", "token_type_hint", "client_id", "client_secret"}
    if unknown or not form.get("token"):
        return _oauth_error(
            400,
            "invalid_request",
            "Give 'token' (and optionally 'token_type_hint').",
            "INVALID_PARAMETER_VALUE",
        )
    token = form["token"]
    session_id: str | None = None
    if token.count(".") == 2:
        try:
            session_id = platform.codec.decode(token).session_id
        except BastionError:
            session_id = None
    else:
        record = platform.identity.find_token(token)
        if record is not None and record.kind == "refresh":
            session_id = record.session_id
    if session_id is not None:
        platform.identity.end_session(session_id)
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


def _discovery(request: Request) -> dict[str, Any]:
    """What this server's OAuth endpoints are (RFC 8414), on the base URL the client called.

    There is no browser (authorization-code) flow, so no ``authorization_endpoint``: the
    grants are ``client_credentials`` (service principals' machine-to-machine login, as
    databricks-sdk's ``oauth-m2m`` does it), ``password`` and ``refresh_token``.
    """
    base = str(request.base_url).rstrip("/")
    return {
        "issuer": f"{base}/oidc",
        "token_endpoint": f"{base}/oidc/v1/token",
        "revocation_endpoint": f"{base}/oidc/v1/revoke",
        "grant_types_supported": ["client_credentials", "password", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": [],
        "scopes_supported": [ALL_SCOPES, "sql", "serving.serving-endpoints", "offline_access"],
    }


@router.get("/oidc/.well-known/oauth-authorization-server", name="oauth_discovery")
def oauth_discovery(request: Request) -> dict[str, Any]:
    return _discovery(request)


@router.get("/.well-known/openid-configuration", name="openid_configuration")
@router.get("/oidc/.well-known/openid-configuration", name="oidc_openid_configuration")
def openid_configuration(request: Request) -> dict[str, Any]:
    return _discovery(request)


@router.get("/.well-known/databricks-config", name="databricks_host_metadata")
def host_metadata(request: Request) -> dict[str, Any]:
    """Databricks' host metadata, which databricks-sdk reads first to find the OAuth
    discovery document (``{oidc_endpoint}/.well-known/oauth-authorization-server``)."""
    base = str(request.base_url).rstrip("/")
    return {"oidc_endpoint": f"{base}/oidc", "workspace_id": "0"}
