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

import contextlib
import logging
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

StorageOptions = Mapping[str, str] | None

logger = logging.getLogger(__name__)


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


COMPACT_MIN_FILES = 50
"""Small files a table may hold before :func:`compact_small_files` rewrites them (Databricks'
auto-compaction default, ``spark.databricks.delta.autoCompact.minNumFiles``)."""
COMPACT_TARGET_BYTES = 128 * 1024 * 1024
"""A file under this size is small; compaction writes files of up to this size (Databricks'
``spark.databricks.delta.autoCompact.maxFileSize``)."""


def compact_small_files(
    table: DeltaTable,
    *,
    min_files: int = COMPACT_MIN_FILES,
    target_bytes: int = COMPACT_TARGET_BYTES,
) -> int:
    """Rewrite the table's small files into fewer, once it holds ``min_files`` of them;
    returns how many files it removed (0: nothing to do).

    Why: every Delta commit through delta-rs costs time in proportion to the files in the
    table (~0.18 ms per file here, measured) — a writer that commits every few seconds would
    slow down without end. The rewrite is a Delta ``OPTIMIZE`` commit (``dataChange=false``):
    readers and concurrent appends are unaffected. **One compactor per table**: delta-rs
    (1.6) commits a second rewrite of files that another process's compaction already
    replaced, duplicating their rows, so callers make sure no one else compacts the table
    meanwhile. The removed files stay on storage until a ``VACUUM``.
    """
    table.update_incremental()  # count what the table holds now, not at our last commit
    sizes = pa.table(table.get_add_actions(flatten=True))["size_bytes"]
    small = pc.sum(pc.less(sizes, target_bytes)).as_py() or 0
    if small < min_files:
        return 0
    metrics = table.optimize.compact(target_size=target_bytes, max_concurrent_tasks=1)
    return int(metrics.get("numFilesRemoved", 0))


def compact_after_commit(table: DeltaTable, name: str, min_files: int) -> int:
    """:func:`compact_small_files` for a writer that has just committed to ``table``: never
    raises (the commit stands either way); a failed compaction is logged, and the writer's
    next commit tries again. ``min_files`` 0 turns compaction off."""
    if min_files <= 0:
        return 0
    try:
        removed = compact_small_files(table, min_files=min_files)
    except Exception as exc:  # e.g. storage unreachable
        logger.info("%s: compaction skipped, retried after a later commit: %s", name, exc)
        with contextlib.suppress(Exception):
            table.update_incremental()
        return 0
    if removed:
        logger.debug("%s: compacted %d small files", name, removed)
    return removed


def vacuum_expired(table: DeltaTable, name: str) -> int:
    """Delete the files that compactions replaced longer ago than the table's retention
    (``delta.deletedFileRetentionDuration``, Delta's default 7 days: time travel to a version
    that needed them then fails, as in any Delta ``VACUUM``); returns how many. Never raises
    (logged). Like compaction, for the deployment's one maintainer."""
    try:
        table.update_incremental()
        return len(table.vacuum(dry_run=False))
    except Exception as exc:
        logger.info("%s: not vacuumed, tried again later: %s", name, exc)
        return 0


def maintain(table: DeltaTable | None, name: str, compact_min_files: int | None) -> int:
    """The maintainer's call: :func:`compact_after_commit` with ``compact_min_files``, or
    (``None``) :func:`vacuum_expired`; nothing for a table that does not exist yet."""
    if table is None:
        return 0
    if compact_min_files is None:
        return vacuum_expired(table, name)
    return compact_after_commit(table, name, compact_min_files)


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
