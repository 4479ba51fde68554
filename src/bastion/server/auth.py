"""The authentication dependency: who is calling, and may this credential call this API?"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from bastion.errors import PermissionDenied
from bastion.identity.authn import presented_token
from bastion.identity.model import Caller
from bastion.platform import Platform


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


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
