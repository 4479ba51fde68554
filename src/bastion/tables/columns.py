"""Unity Catalog column types (``type_name`` / ``type_text``) and their Arrow equivalents."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from bastion.errors import InvalidRequest
from bastion.fields import check_nesting

_SIMPLE: dict[str, tuple[str, pa.DataType]] = {
    "string": ("STRING", pa.string()),
    "varchar": ("STRING", pa.string()),
    "bigint": ("LONG", pa.int64()),
    "long": ("LONG", pa.int64()),
    "int": ("INT", pa.int32()),
    "integer": ("INT", pa.int32()),
    "smallint": ("SHORT", pa.int16()),
    "short": ("SHORT", pa.int16()),
    "tinyint": ("BYTE", pa.int8()),
    "byte": ("BYTE", pa.int8()),
    "double": ("DOUBLE", pa.float64()),
    "float": ("FLOAT", pa.float32()),
    "boolean": ("BOOLEAN", pa.bool_()),
    "timestamp": ("TIMESTAMP", pa.timestamp("us", tz="UTC")),
    "timestamp_ntz": ("TIMESTAMP_NTZ", pa.timestamp("us")),
    "date": ("DATE", pa.date32()),
    "binary": ("BINARY", pa.binary()),
}
_TYPE_NAMES = {name: text for text, (name, _) in _SIMPLE.items()}
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


@dataclass(frozen=True)
class Column:
    name: str
    type_text: str
    type_name: str
    nullable: bool = True
    comment: str | None = None

    def as_dict(self, position: int) -> dict[str, object]:
        return {
            "name": self.name,
            "type_text": self.type_text,
            "type_name": self.type_name,
            "position": position,
            "nullable": self.nullable,
            "comment": self.comment,
        }


def arrow_type(type_text: str) -> tuple[str, pa.DataType]:
    """``(type_name, arrow type)`` for a Databricks SQL type such as ``map<string,string>``."""
    if not isinstance(type_text, str) or len(type_text) > 10_000:
        raise InvalidRequest("A column type is a string of at most 10,000 characters.")
    check_nesting(type_text, "column type", opening="<(", closing=">)")
    text = type_text.strip().lower()
    if text in _SIMPLE:
        return _SIMPLE[text]
    match = _DECIMAL.match(text)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not (1 <= precision <= 38 and 0 <= scale <= precision):
            raise InvalidRequest(f"Invalid decimal type {type_text!r}.")
        return "DECIMAL", pa.decimal128(precision, scale)
    if text.startswith("array<") and text.endswith(">"):
        return "ARRAY", pa.list_(arrow_type(text[6:-1])[1])
    if text.startswith("map<") and text.endswith(">"):
        key, value = _split_top(text[4:-1])
        return "MAP", pa.map_(arrow_type(key)[1], arrow_type(value)[1])
    if text.startswith("struct<") and text.endswith(">"):
        fields = []
        for part in _split_top(text[7:-1], limit=None):
            name, _, field_type = part.partition(":")
            if not _COLUMN_NAME.match(name.strip()):
                raise InvalidRequest(f"Invalid struct field name {name!r}.")
            fields.append(pa.field(name.strip(), arrow_type(field_type)[1]))
        return "STRUCT", pa.struct(fields)
    raise InvalidRequest(f"Unsupported column type {type_text!r}.")


def _split_top(text: str, limit: int | None = 2) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    if limit is not None and len(parts) != limit:
        raise InvalidRequest(f"Invalid type parameters {text!r}.")
    return [p.strip() for p in parts]


def parse_column(spec: dict[str, object]) -> Column:
    name = spec.get("name")
    if not isinstance(name, str) or not _COLUMN_NAME.match(name):
        raise InvalidRequest(f"Invalid column name {name!r}.")
    type_text = spec.get("type_text")
    if not isinstance(type_text, str):
        type_name = spec.get("type_name")
        if not isinstance(type_name, str) or type_name.upper() not in _TYPE_NAMES:
            raise InvalidRequest(f"Column {name!r} needs a valid type_text or type_name.")
        type_text = _TYPE_NAMES[type_name.upper()]
    type_name, _ = arrow_type(type_text)
    nullable = spec.get("nullable", True)
    comment = spec.get("comment")
    return Column(
        name=name.lower(),
        type_text=type_text.strip().lower(),
        type_name=type_name,
        nullable=bool(nullable),
        comment=comment if isinstance(comment, str) else None,
    )


def arrow_schema(columns: list[Column]) -> pa.Schema:
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise InvalidRequest("Column names must be unique.")
    if not columns:
        raise InvalidRequest("A table needs at least one column.")
    return pa.schema([pa.field(c.name, arrow_type(c.type_text)[1], c.nullable) for c in columns])
