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
from bastion.tables.columns import parse_column
from bastion.tables.delta import create_table_if_missing
from bastion.tables.storage import reachable
from bastion.tables.system import SYSTEM_CATALOG, SYSTEM_SCHEMAS, SYSTEM_TABLES, SystemTable

ADMIN_USER = "admin"


@dataclass(frozen=True)
class InitialCredentials:
    """Shown once, on the run that created them; only hashes are stored.

    ``password`` and ``token`` are None where the operator supplied them (through
    ``BASTION_ADMIN_PASSWORD`` / ``BASTION_ADMIN_TOKEN``): what an operator already knows is
    never printed, so it cannot end up in service logs.
    """

    user_name: str
    password: str | None
    token: str | None


def initialize(platform: Platform) -> InitialCredentials | None:
    """Create what a fresh installation needs; return the admin credentials if just created."""
    identity = platform.identity
    for group in (ADMINS_GROUP, USERS_GROUP):
        if identity.find(group) is None:
            identity.create_principal(PrincipalKind.GROUP, group)
    existing = identity.find(ADMIN_USER)
    if existing is not None:
        ensure_system_catalog(platform, existing.id)
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
    ensure_system_catalog(platform, admin.id)
    return InitialCredentials(
        ADMIN_USER,
        None if settings.admin_password else password,
        None if settings.admin_token else token,
    )


def ensure_system_catalog(platform: Platform, admin_id: int) -> None:
    """The ``system`` catalog and its tables (readable by admins unless granted further)."""
    governance = platform.governance
    names = {(i.type, i.full_name) for i in governance.list_securables(SecurableType.CATALOG)}
    if (SecurableType.CATALOG, SYSTEM_CATALOG) not in names:
        governance.create(
            SecurableType.CATALOG,
            SYSTEM_CATALOG,
            owner_id=admin_id,
            created_by=ADMIN_USER,
            comment="Platform-produced tables: audit, serving, tracing, red teaming.",
        )
    schemas = {
        i.full_name for i in governance.list_securables(SecurableType.SCHEMA, SYSTEM_CATALOG)
    }
    for schema in SYSTEM_SCHEMAS:
        if f"{SYSTEM_CATALOG}.{schema}" not in schemas:
            governance.create(
                SecurableType.SCHEMA,
                f"{SYSTEM_CATALOG}.{schema}",
                owner_id=admin_id,
                created_by=ADMIN_USER,
            )
    for table in SYSTEM_TABLES:
        register_system_table(platform, table, admin_id)


def register_system_table(platform: Platform, table: SystemTable, owner_id: int) -> None:
    """Register a platform table in the catalog and create its (empty) Delta table.

    A table registered while the tables lived elsewhere (``BASTION_TABLE_STORAGE`` changed)
    is pointed at its location in the current storage; its old files are not moved.
    """
    storage = platform.table_storage
    uri = storage.location(table.full_name)
    schema_name = table.full_name.rsplit(".", 1)[0]
    existing = {
        i.full_name: i
        for i in platform.governance.list_securables(SecurableType.TABLE, schema_name)
    }
    info = existing.get(table.full_name)
    if info is not None and info.properties.get("storage_location") != uri:
        platform.governance.update(
            SecurableType.TABLE,
            table.full_name,
            updated_by=ADMIN_USER,
            properties={"storage_location": uri},
        )
    if info is None:
        columns = [parse_column({"name": n, "type_text": t}) for n, t in table.columns]
        platform.governance.create(
            SecurableType.TABLE,
            table.full_name,
            owner_id=owner_id,
            created_by=ADMIN_USER,
            comment=table.comment,
            properties={
                "table_type": "MANAGED",
                "data_source_format": "DELTA",
                "columns": [c.as_dict(i) for i, c in enumerate(columns)],
                "storage_location": uri,
            },
        )
    storage.prepare(uri)
    with reachable(f"create {table.full_name}"):
        create_table_if_missing(
            uri, table.schema, name=table.full_name, storage_options=storage.options
        )


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
