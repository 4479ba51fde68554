"""The authentication dependency: who is calling, and may this credential call this API?"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi import Request

from bastion.errors import PermissionDenied, Unauthenticated
from bastion.identity.model import Caller
from bastion.platform import Platform


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def presented_token(headers: Mapping[str, str]) -> str:
    """The credential in ``Authorization: Bearer …`` or ``x-api-key`` (lower-case header keys)."""
    header = headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthenticated("Use 'Authorization: Bearer <token>'.")
    api_key = headers.get("x-api-key")
    if api_key:
        return api_key.strip()
    raise Unauthenticated("Credential was not sent or was of an unsupported type for this API.")


def authenticated(scope: str) -> Callable[[Request], Caller]:
    """A dependency that authenticates the caller and checks the credential has ``scope``."""

    def dependency(request: Request) -> Caller:
        caller = platform_of(request).authenticator.authenticate(presented_token(request.headers))
        request.state.caller = caller
        if not caller.has_scope(scope):
            raise PermissionDenied(
                f"The credential lacks the scope '{scope}' that this API requires."
            )
        return caller

    return dependency


def require_admin(caller: Caller) -> None:
    if not caller.is_admin:
        raise PermissionDenied("Only workspace admins may do this.")
