"""Privileges, which securable types they apply to, and how they are spelled."""

from __future__ import annotations

from enum import StrEnum

from bastion.errors import InvalidRequest
from bastion.governance.securables import SecurableType as T


class Privilege(StrEnum):
    """Privileges in the REST API's spelling (SQL writes them with spaces)."""

    ALL_PRIVILEGES = "ALL_PRIVILEGES"
    MANAGE = "MANAGE"
    USE_CATALOG = "USE_CATALOG"
    USE_SCHEMA = "USE_SCHEMA"
    CREATE_SCHEMA = "CREATE_SCHEMA"
    CREATE_TABLE = "CREATE_TABLE"
    CREATE_FUNCTION = "CREATE_FUNCTION"
    CREATE_MODEL = "CREATE_MODEL"
    CREATE_VOLUME = "CREATE_VOLUME"
    SELECT = "SELECT"
    MODIFY = "MODIFY"
    EXECUTE = "EXECUTE"
    READ_VOLUME = "READ_VOLUME"
    WRITE_VOLUME = "WRITE_VOLUME"
    CAN_VIEW = "CAN_VIEW"
    CAN_QUERY = "CAN_QUERY"
    CAN_MANAGE = "CAN_MANAGE"
    CAN_USE = "CAN_USE"

    @property
    def sql(self) -> str:
        return self.value.replace("_", " ")


_CONTAINER = {
    Privilege.ALL_PRIVILEGES,
    Privilege.MANAGE,
    Privilege.USE_SCHEMA,
    Privilege.CREATE_TABLE,
    Privilege.CREATE_FUNCTION,
    Privilege.CREATE_MODEL,
    Privilege.CREATE_VOLUME,
    Privilege.SELECT,
    Privilege.MODIFY,
    Privilege.EXECUTE,
    Privilege.READ_VOLUME,
    Privilege.WRITE_VOLUME,
}

APPLICABLE: dict[T, frozenset[Privilege]] = {
    T.CATALOG: frozenset(_CONTAINER | {Privilege.USE_CATALOG, Privilege.CREATE_SCHEMA}),
    T.SCHEMA: frozenset(_CONTAINER),
    T.TABLE: frozenset(
        {Privilege.ALL_PRIVILEGES, Privilege.MANAGE, Privilege.SELECT, Privilege.MODIFY}
    ),
    T.FUNCTION: frozenset({Privilege.ALL_PRIVILEGES, Privilege.MANAGE, Privilege.EXECUTE}),
    T.MODEL: frozenset({Privilege.ALL_PRIVILEGES, Privilege.MANAGE, Privilege.EXECUTE}),
    T.VOLUME: frozenset(
        {
            Privilege.ALL_PRIVILEGES,
            Privilege.MANAGE,
            Privilege.READ_VOLUME,
            Privilege.WRITE_VOLUME,
        }
    ),
    T.SERVING_ENDPOINT: frozenset({Privilege.CAN_VIEW, Privilege.CAN_QUERY, Privilege.CAN_MANAGE}),
    T.APP: frozenset({Privilege.CAN_USE, Privilege.CAN_MANAGE}),
}

# What a held privilege also gives. ALL PRIVILEGES does not include MANAGE (as in Databricks);
# the endpoint levels are ordered CAN_MANAGE > CAN_QUERY > CAN_VIEW.
IMPLIES: dict[Privilege, frozenset[Privilege]] = {
    Privilege.ALL_PRIVILEGES: frozenset(
        p
        for p in Privilege
        if p
        not in {
            Privilege.MANAGE,
            Privilege.CAN_VIEW,
            Privilege.CAN_QUERY,
            Privilege.CAN_MANAGE,
            Privilege.CAN_USE,
        }
    ),
    Privilege.CAN_MANAGE: frozenset({Privilege.CAN_QUERY, Privilege.CAN_VIEW, Privilege.CAN_USE}),
    Privilege.CAN_QUERY: frozenset({Privilege.CAN_VIEW}),
}


def parse_privilege(text: str, securable_type: T | None = None) -> Privilege:
    """Accept ``USE CATALOG``, ``use_catalog`` or ``USE_CATALOG``; check it fits the type."""
    if not isinstance(text, str):
        raise InvalidRequest(f"Invalid privilege {text!r}.")
    key = "_".join(text.strip().upper().replace("-", "_").split())
    try:
        privilege = Privilege(key)
    except ValueError:
        raise InvalidRequest(f"Unknown privilege {text!r}.") from None
    if securable_type is not None and privilege not in APPLICABLE[securable_type]:
        allowed = ", ".join(sorted(p.value for p in APPLICABLE[securable_type]))
        raise InvalidRequest(
            f"Privilege {privilege.value} does not apply to a {securable_type.label}; "
            f"applicable: {allowed}."
        )
    return privilege


def expand(held: set[Privilege]) -> set[Privilege]:
    out = set(held)
    for privilege in held:
        out |= IMPLIES.get(privilege, frozenset())
    return out
