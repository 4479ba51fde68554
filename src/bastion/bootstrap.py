"""First-run initialisation of ``BASTION_HOME``: groups, the admin, and ``main.default``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.governance.store import GrantChange
from bastion.identity.credentials import PAT_PREFIX
from bastion.identity.model import ADMINS_GROUP, USERS_GROUP, PrincipalKind
from bastion.platform import Platform

ADMIN_USER = "admin"


@dataclass(frozen=True)
class InitialCredentials:
    """Shown once, on the run that created them; only hashes are stored."""

    user_name: str
    password: str
    token: str


def initialize(platform: Platform) -> InitialCredentials | None:
    """Create what a fresh installation needs; return the admin credentials if just created."""
    identity = platform.identity
    for group in (ADMINS_GROUP, USERS_GROUP):
        if identity.find(group) is None:
            identity.create_principal(PrincipalKind.GROUP, group)
    if identity.find(ADMIN_USER) is not None:
        return None
    settings = platform.settings
    password = settings.admin_password or secrets.token_urlsafe(12)
    if settings.admin_token and not settings.admin_token.startswith(PAT_PREFIX):
        raise ValueError(f"BASTION_ADMIN_TOKEN must start with {PAT_PREFIX!r}.")
    admin = identity.create_principal(
        PrincipalKind.USER, ADMIN_USER, "Administrator", password=password
    )
    admins = identity.find(ADMINS_GROUP)
    assert admins is not None
    identity.set_members(admins.id, add=[admin.id])
    token, _ = identity.create_token(
        admin.id,
        kind="pat",
        prefix=PAT_PREFIX,
        lifetime_s=None,
        comment="initial admin token",
        value=settings.admin_token,
    )
    _create_main_catalog(platform, admin.id)
    return InitialCredentials(ADMIN_USER, password, token)


def _create_main_catalog(platform: Platform, admin_id: int) -> None:
    """``main.default``, usable by every user, as in a Databricks workspace catalog."""
    governance = platform.governance
    users = platform.identity.find(USERS_GROUP)
    assert users is not None
    catalog = governance.create(
        SecurableType.CATALOG,
        "main",
        owner_id=admin_id,
        created_by=ADMIN_USER,
        comment="Default catalog",
    )
    schema = governance.create(
        SecurableType.SCHEMA,
        "main.default",
        owner_id=admin_id,
        created_by=ADMIN_USER,
        comment="Default schema",
    )
    governance.update_grants(catalog.id, [GrantChange(users.id, add=(Privilege.USE_CATALOG,))])
    governance.update_grants(
        schema.id,
        [
            GrantChange(
                users.id,
                add=(
                    Privilege.USE_SCHEMA,
                    Privilege.CREATE_TABLE,
                    Privilege.CREATE_FUNCTION,
                    Privilege.CREATE_MODEL,
                    Privilege.CREATE_VOLUME,
                ),
            )
        ],
    )
