"""Records (dicts read back from the WAL) to an Arrow table of a given schema.

The WAL stores JSON, so timestamps and dates come back as ISO-8601 strings; everything
else (numbers, strings, booleans, lists, structs as objects, maps as objects) converts
directly. Conversion is column by column; a column that fails is re-checked row by row so
that one bad record is quarantined instead of failing the whole batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

_CONVERSION_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError)


def _is_temporal(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


def _has_nested_temporal(t: pa.DataType) -> bool:
    if _is_temporal(t):
        return True
    if pa.types.is_struct(t):
        return any(_has_nested_temporal(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _has_nested_temporal(t.value_type)
    if pa.types.is_map(t):
        return _has_nested_temporal(t.key_type) or _has_nested_temporal(t.item_type)
    return False


def _parse_temporal(value: str, t: pa.DataType) -> dt.datetime | dt.date:
    if pa.types.is_date(t):
        return dt.date.fromisoformat(value[:10])
    parsed = dt.datetime.fromisoformat(value)
    if t.tz is not None and parsed.tzinfo is None:
        # Naive strings in a zoned column are UTC (the writer serialises naive datetimes as UTC).
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _normalize(value: Any, t: pa.DataType) -> Any:
    """Turn ISO strings back into datetimes wherever the type says a timestamp/date lives."""
    if value is None:
        return None
    if _is_temporal(t):
        return _parse_temporal(value, t) if isinstance(value, str) else value
    if pa.types.is_struct(t) and isinstance(value, dict):
        children = {t.field(i).name: t.field(i).type for i in range(t.num_fields)}
        return {k: _normalize(v, children[k]) if k in children else v for k, v in value.items()}
    if pa.types.is_map(t) and isinstance(value, dict):
        return {k: _normalize(v, t.item_type) for k, v in value.items()}
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and isinstance(value, list):
        return [_normalize(v, t.value_type) for v in value]
    return value


def _column(values: list[Any], field: pa.Field) -> pa.Array:
    t = field.type
    arr: pa.Array
    if _is_temporal(t) and any(isinstance(v, str) for v in values):
        try:
            arr = pa.array(values, pa.string()).cast(t)
        except _CONVERSION_ERRORS:
            arr = pa.array([_normalize(v, t) for v in values], t)
    else:
        try:
            arr = pa.array(values, t)
        except _CONVERSION_ERRORS:
            if not _has_nested_temporal(t):
                raise
            arr = pa.array([_normalize(v, t) for v in values], t)
    if not field.nullable and arr.null_count:
        raise ValueError(f"column {field.name!r} is not nullable but the record has no value")
    return arr


def records_to_arrow(
    records: Sequence[Mapping[str, Any]], schema: pa.Schema
) -> tuple[pa.Table, dict[int, str]]:
    """Convert ``records`` to ``schema``.

    Returns the table of the convertible records (in order) and, for each record that could
    not be converted, its index and the reason. Keys absent from a record are nulls.

    >>> t, bad = records_to_arrow([{"a": 1}, {"a": "x"}], pa.schema([("a", pa.int64())]))
    >>> t.num_rows, sorted(bad)
    (1, [1])
    """
    bad: dict[int, str] = {}
    columns: list[pa.Array] = []
    for field in schema:
        name = field.name
        values = [r.get(name) for r in records]
        try:
            columns.append(_column(values, field))
        except _CONVERSION_ERRORS:
            for i, value in enumerate(values):
                if i in bad:
                    continue
                try:
                    _column([value], field)
                except _CONVERSION_ERRORS as exc:
                    bad[i] = f"column {name!r}: {exc}"
            if not bad:  # every value converts alone but not together: give up on the batch
                raise
    names = frozenset(schema.names)
    for i, record in enumerate(records):
        if i not in bad and not names.issuperset(record):
            unknown = sorted(set(record) - names)
            bad[i] = f"fields not in the table schema: {unknown}"
    if bad:
        kept = [r for i, r in enumerate(records) if i not in bad]
        table, again = records_to_arrow(kept, schema)
        if again:  # cannot happen unless conversion is order-dependent; never drop silently
            raise ValueError(f"records failed conversion only in a second pass: {again}")
        return table, bad
    return pa.Table.from_arrays(columns, schema=schema), bad
