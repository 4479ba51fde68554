"""Small helpers over delta-rs (``deltalake``) shared by the durable writer and the SQL engine.

>>> import pyarrow as pa, tempfile
>>> uri = tempfile.mkdtemp() + "/t"
>>> table = create_table_if_missing(uri, pa.schema([("id", pa.string())]))
>>> append(table, pa.table({"id": ["a"]}), app_id="doc", version=1)
1
>>> transaction_version(table, "doc"), read_table(uri).num_rows
(1, 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

StorageOptions = Mapping[str, str] | None


def open_table(uri: str, *, storage_options: StorageOptions = None) -> DeltaTable | None:
    """The Delta table at ``uri``, or ``None`` when there is none yet."""
    try:
        return DeltaTable(uri, storage_options=dict(storage_options or {}) or None)
    except TableNotFoundError:
        return None


def create_table_if_missing(
    uri: str,
    schema: pa.Schema,
    *,
    partition_by: Sequence[str] = (),
    name: str | None = None,
    description: str | None = None,
    storage_options: StorageOptions = None,
) -> DeltaTable:
    """Open the table at ``uri``, creating it empty with ``schema`` when it does not exist.

    An existing table is returned as it is, even if its schema differs: appends of rows that
    do not fit it then fail (and the writer keeps those rows and retries).
    """
    return DeltaTable.create(
        uri,
        schema,
        mode="ignore",
        partition_by=list(partition_by) or None,
        name=name,
        description=description,
        storage_options=dict(storage_options or {}) or None,
    )


def append(
    table: DeltaTable,
    data: pa.Table,
    *,
    partition_by: Sequence[str] = (),
    app_id: str | None = None,
    version: int | None = None,
) -> int:
    """Append ``data`` as one Delta commit and return the table's new version.

    With ``app_id`` and ``version`` the commit also records the application transaction
    ``(app_id, version)``: whoever reads :func:`transaction_version` afterwards knows that
    batch ``version`` is in the table, which is how a replay avoids committing it twice.
    """
    properties = None
    if app_id is not None:
        if version is None:
            raise ValueError("an app_id needs a version")
        properties = CommitProperties(app_transactions=[Transaction(app_id, version)])
    write_deltalake(
        table,
        data,
        mode="append",
        partition_by=list(partition_by) or None,
        commit_properties=properties,
    )
    return table.version()


def transaction_version(table: DeltaTable, app_id: str) -> int | None:
    """The last batch version ``app_id`` committed to ``table`` (refreshed from storage)."""
    table.update_incremental()
    return table.transaction_version(app_id)


def read_table(
    uri: str, *, columns: Sequence[str] | None = None, storage_options: StorageOptions = None
) -> pa.Table:
    """The current snapshot of a Delta table as an in-memory Arrow table."""
    table = DeltaTable(uri, storage_options=dict(storage_options or {}) or None)
    return table.to_pyarrow_table(columns=list(columns) if columns is not None else None)


def read_dataset(uri: str, *, storage_options: StorageOptions = None) -> ds.Dataset:
    """The current snapshot of a Delta table as a lazily-read ``pyarrow.dataset``."""
    table = DeltaTable(uri, storage_options=dict(storage_options or {}) or None)
    return table.to_pyarrow_dataset()
