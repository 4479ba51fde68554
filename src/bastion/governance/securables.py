"""Securable types and their names: ``catalog``, ``catalog.schema``, ``catalog.schema.object``."""

from __future__ import annotations

import re
from enum import StrEnum

from bastion.errors import InvalidRequest

_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,254}$")


class SecurableType(StrEnum):
    CATALOG = "catalog"
    SCHEMA = "schema"
    TABLE = "table"
    FUNCTION = "function"
    MODEL = "registered_model"
    VOLUME = "volume"
    SERVING_ENDPOINT = "serving_endpoint"
    APP = "app"

    @property
    def depth(self) -> int:
        """How many dot-separated parts a full name of this type has (0: a flat name)."""
        return {SecurableType.CATALOG: 1, SecurableType.SCHEMA: 2}.get(
            self, 0 if self in (SecurableType.SERVING_ENDPOINT, SecurableType.APP) else 3
        )

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


_ALIASES = {
    "model": SecurableType.MODEL,
    "registered-model": SecurableType.MODEL,
    "view": SecurableType.TABLE,
    "serving-endpoint": SecurableType.SERVING_ENDPOINT,
    "serving-endpoints": SecurableType.SERVING_ENDPOINT,
    "endpoint": SecurableType.SERVING_ENDPOINT,
}


def parse_type(text: str) -> SecurableType:
    key = text.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        return SecurableType(key)
    except ValueError:
        names = ", ".join(t.value for t in SecurableType)
        raise InvalidRequest(
            f"Unknown securable type {text!r}; expected one of: {names}."
        ) from None


def validate_part(part: str, what: str = "name") -> str:
    """Check one name part and return it in canonical (lower) case, as Unity Catalog does."""
    if not _PART.match(part):
        raise InvalidRequest(
            f"Invalid {what} {part!r}: use 1-255 letters, digits, '_' or '-', "
            "not starting with '-'."
        )
    return part.lower()


def parse_name(securable_type: SecurableType, full_name: str) -> str:
    """Validate a full name for ``securable_type`` and return it canonicalised."""
    if not isinstance(full_name, str) or not full_name:
        raise InvalidRequest(f"A {securable_type.label} name is required.")
    text = full_name.replace("`", "")
    parts = text.split(".") if securable_type.depth else [text]
    expected = securable_type.depth or 1
    if len(parts) != expected:
        shape = ".".join(["catalog", "schema", "name"][:expected]) if expected > 1 else "name"
        raise InvalidRequest(
            f"Invalid {securable_type.label} name {full_name!r}: expected {shape}."
        )
    return ".".join(validate_part(p, f"{securable_type.label} name part") for p in parts)


_NOT_IDENTIFIER = re.compile(r"[^a-z0-9_]+")


def derived_part(text: str) -> str:
    """A name part derived from another name (an endpoint's, a model's): lower case, every run
    of characters other than letters, digits and ``_`` replaced by ``_``, so that the result
    can be written in SQL unquoted (``my-endpoint`` → ``my_endpoint``).

    >>> derived_part("Kyoto-Agent.v2")
    'kyoto_agent_v2'
    """
    part = _NOT_IDENTIFIER.sub("_", text.strip().lower()).strip("_")[:200]
    return part or "unnamed"


def quote_name(full_name: str) -> str:
    """A dotted name with every part back-quoted, for SQL that Bastion generates.

    >>> quote_name("main.default.my-ep_payload")
    '`main`.`default`.`my-ep_payload`'
    """
    return ".".join("`" + part.replace("`", "``") + "`" for part in full_name.split("."))


def parent_name(securable_type: SecurableType, full_name: str) -> tuple[SecurableType, str] | None:
    if securable_type.depth == 2:
        return SecurableType.CATALOG, full_name.split(".")[0]
    if securable_type.depth == 3:
        return SecurableType.SCHEMA, full_name.rsplit(".", 1)[0]
    return None
