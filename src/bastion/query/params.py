"""Named statement parameters (``:name``), in the dict form or Databricks' list form."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from bastion.errors import InvalidRequest

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_INTEGERS = {"INT", "INTEGER", "BIGINT", "LONG", "SMALLINT", "SHORT", "TINYINT", "BYTE"}
_FLOATS = {"DOUBLE", "FLOAT", "REAL"}
_STRINGS = {"STRING", "VARCHAR", "CHAR", ""}


Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


def normalize(parameters: Parameters) -> dict[str, Any]:
    """``{name: python value}`` from either form, names checked and lower-cased.

    >>> normalize([{"name": "n", "value": "5", "type": "INT"}, {"name": "s", "value": "x"}])
    {'n': 5, 's': 'x'}
    """
    if parameters is None:
        return {}
    out: dict[str, Any] = {}
    if isinstance(parameters, Mapping):
        items = [(name, value, None) for name, value in parameters.items()]
    else:
        items = []
        for entry in parameters:
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise InvalidRequest("Each parameter needs a 'name' (and a 'value').")
            items.append((entry["name"], entry.get("value"), entry.get("type")))
    for name, value, type_text in items:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidRequest(f"Invalid parameter name {name!r}.")
        if name.lower() in out:
            raise InvalidRequest(f"Parameter {name!r} is given twice.")
        out[name.lower()] = _typed(name, value, type_text) if type_text is not None else value
    return out


def _typed(name: str, value: Any, type_text: Any) -> Any:
    if not isinstance(type_text, str):
        raise InvalidRequest(f"Invalid type for parameter {name!r}.")
    kind = type_text.strip().upper()
    if value is None:
        return None
    text = str(value)
    try:
        if kind in _STRINGS:
            return text
        if kind in _INTEGERS:
            return int(text)
        if kind in _FLOATS:
            return float(text)
        if kind.startswith("DECIMAL") or kind == "NUMERIC":
            return Decimal(text)
        if kind in ("BOOLEAN", "BOOL"):
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if kind == "DATE":
            return date.fromisoformat(text)
        if kind in ("TIMESTAMP", "TIMESTAMP_NTZ"):
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, InvalidOperation):
        raise InvalidRequest(f"Parameter {name!r}: {text!r} is not a valid {kind}.") from None
    raise InvalidRequest(f"Parameter {name!r} has unsupported type {type_text!r}.")


def bind(values: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    """The values of the parameters a statement uses; every one of them must be given."""
    missing = sorted(n for n in used if n.lower() not in values)
    if missing:
        raise InvalidRequest(
            "No value given for parameter(s): " + ", ".join(f":{n}" for n in missing) + "."
        )
    return {n: values[n.lower()] for n in used}
