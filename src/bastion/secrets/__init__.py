"""Secret scopes and keys, encrypted at rest and referenced as ``{{secrets/<scope>/<key>}}``.

Values go in through :meth:`SecretStore.put` and come out only through
:meth:`SecretStore.resolve`, which the serving router calls in-process; no API returns them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.secrets.references import SecretReference, parse_reference
from bastion.secrets.store import SecretPermission, SecretStore, secret_cipher

if TYPE_CHECKING:
    from bastion.platform import Platform

__all__ = [
    "SecretPermission",
    "SecretReference",
    "SecretStore",
    "parse_reference",
    "secret_cipher",
    "secrets_of",
]


def secrets_of(platform: Platform) -> SecretStore:
    """The platform's secret store (``platform.secrets``), created on first use if not wired."""
    store = getattr(platform, "secrets", None)
    if isinstance(store, SecretStore):
        return store
    store = SecretStore(
        platform.metastore,
        platform.clock,
        secret_cipher(platform.settings.resolved_secret_key_file),
    )
    platform.secrets = store  # type: ignore[attr-defined]
    return store
