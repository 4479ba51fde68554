"""The one check every secret reference passes, wherever it enters and whenever it is used.

A ``{{secrets/<scope>/<key>}}`` reference lets the platform send a secret somewhere on a
principal's behalf, so it is checked against *the principal who put it there*:

- when it is written: a model version's external-model config (its creator), an endpoint
  config (its writer), an alias moved onto a version that carries one (the mover), and every
  later feature that takes references (bundles, apps' ``valueFrom``);
- and again whenever what is served changes (the serving router rebuilds its routing view on
  any grant, ACL, alias or config change), so a revoked ``READ``, a deleted or disabled
  principal, or a deleted secret stops its use on the next request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.errors import PermissionDenied
from bastion.identity.model import Caller
from bastion.secrets import secrets_of
from bastion.secrets.references import SecretReference

if TYPE_CHECKING:
    from bastion.platform import Platform


def require_secret_use(
    platform: Platform, principal: Caller | int | str, reference: SecretReference
) -> None:
    """Raise unless ``principal`` (a caller, a principal id or name) may use ``reference``:
    it exists, is active, holds ``READ`` on the scope, and the key exists."""
    caller = (
        principal
        if isinstance(principal, Caller)
        else platform.identity_cache.active_caller(principal)
    )
    if caller is None:
        raise PermissionDenied(
            f"Secret {reference} was put here by a principal that no longer exists or is "
            "disabled; put the reference again as someone who may read it."
        )
    secrets_of(platform).check_readable(caller, reference)
