"""What a statement returns: Arrow rows plus Databricks-style column descriptions."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from bastion.errors import InvalidRequest


@dataclass(frozen=True)
class ResultColumn:
    name: str
    type_text: str
    type_name: str
    position: int


@dataclass
class StatementResult:
    columns: list[ResultColumn]
    table: pa.Table
    truncated: bool
    statement_type: str

    @property
    def rows(self) -> list[dict[str, object]]:
        """The rows as dictionaries (convenient in tests and small scripts)."""
        return self.table.to_pylist()


_SIMPLE: dict[pa.DataType, tuple[str, str]] = {
    pa.string(): ("string", "STRING"),
    pa.large_string(): ("string", "STRING"),
    pa.string_view(): ("string", "STRING"),
    pa.int64(): ("bigint", "LONG"),
    pa.int32(): ("int", "INT"),
    pa.int16(): ("smallint", "SHORT"),
    pa.int8(): ("tinyint", "BYTE"),
    pa.uint8(): ("smallint", "SHORT"),
    pa.uint16(): ("int", "INT"),
    pa.uint32(): ("bigint", "LONG"),
    pa.float64(): ("double", "DOUBLE"),
    pa.float32(): ("float", "FLOAT"),
    pa.bool_(): ("boolean", "BOOLEAN"),
    pa.date32(): ("date", "DATE"),
    pa.binary(): ("binary", "BINARY"),
    pa.large_binary(): ("binary", "BINARY"),
    pa.null(): ("void", "NULL"),
}


def describe_type(data_type: pa.DataType) -> tuple[str, str]:
    """``(type_text, type_name)`` in Databricks' spelling for an Arrow type.

    >>> describe_type(pa.list_(pa.int64()))
    ('array<bigint>', 'ARRAY')
    """
    if data_type in _SIMPLE:
        return _SIMPLE[data_type]
    if pa.types.is_timestamp(data_type):
        return ("timestamp", "TIMESTAMP") if data_type.tz else ("timestamp_ntz", "TIMESTAMP_NTZ")
    if pa.types.is_decimal(data_type):
        return f"decimal({data_type.precision},{data_type.scale})", "DECIMAL"
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return f"array<{describe_type(data_type.value_type)[0]}>", "ARRAY"
    if pa.types.is_map(data_type):
        key, value = describe_type(data_type.key_type)[0], describe_type(data_type.item_type)[0]
        return f"map<{key},{value}>", "MAP"
    if pa.types.is_struct(data_type):
        fields = ",".join(f"{f.name}:{describe_type(f.type)[0]}" for f in data_type)
        return f"struct<{fields}>", "STRUCT"
    if pa.types.is_dictionary(data_type):
        return describe_type(data_type.value_type)
    if pa.types.is_duration(data_type) or pa.types.is_interval(data_type):
        return "interval", "INTERVAL"
    if pa.types.is_time(data_type):
        return "string", "STRING"
    return "string", "STRING"


def result_columns(schema: pa.Schema) -> list[ResultColumn]:
    out = []
    for position, field in enumerate(schema):
        type_text, type_name = describe_type(field.type)
        out.append(ResultColumn(field.name, type_text, type_name, position))
    return out


def storable_type(data_type: pa.DataType, column: str) -> str:
    """The ``type_text`` a table column gets for a query result column (CREATE TABLE AS)."""
    type_text, type_name = describe_type(data_type)
    if type_name in ("NULL", "INTERVAL") or (
        pa.types.is_time(data_type) or pa.types.is_uint64(data_type)
    ):
        raise InvalidRequest(
            f"Column {column!r} has type {data_type} which a table cannot store; CAST it "
            "to a supported type (STRING, BIGINT, DOUBLE, DECIMAL, TIMESTAMP, ...)."
        )
    return type_text


def message_table(**values: object) -> pa.Table:
    """A one-row result such as ``num_affected_rows`` for DDL and DML statements."""
    return pa.table({k: [v] for k, v in values.items()})
