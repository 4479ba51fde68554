"""Locked-down DuckDB databases, inside a SQL worker process.

Each statement gets a fresh connection that sees only the sources of its job, cannot reach
files, extensions or the network (``enable_external_access=false``) and cannot change its
settings (``lock_configuration=true``).

Small statements run in the worker's one shared database, which can open no file at all:
their Delta tables come in as Arrow datasets. A statement that scans ``native_scan_bytes``
or more of Parquet gets a database whose ``allowed_paths`` are exactly the data files of the
snapshots it was authorized to read, so DuckDB's own Parquet reader (parallel, with
row-group statistics) does the scan; that database is then locked like the shared one.
Opening one costs ~25 ms, so the last few are kept, each keyed by its exact set of files: a
later statement reads through one only when it was authorized for exactly those files
(a dashboard's panels over one snapshot, say). Every statement gets a fresh connection to
it, and its tables are *temporary* views of that connection, gone when it closes.

A worker runs one statement at a time, so its memory limit is the statement's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from bastion.query.protocol import ArrowData, DeltaSnapshot, ParquetFiles, Source, read_schema

_LOCKED: dict[str, Any] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
}
_CACHED_DATASETS = 32
_CACHED_DATABASES = 2


class Sandbox:
    """The worker's shared locked database, and dedicated ones for large native scans."""

    def __init__(
        self, memory_limit: str, threads: int, storage_options: Mapping[str, str] | None = None
    ) -> None:
        self._memory_limit = memory_limit
        self._threads = threads
        self._storage_options = dict(storage_options or {})
        self._database: duckdb.DuckDBPyConnection | None = None
        self._datasets: OrderedDict[tuple[Any, ...], ds.Dataset] = OrderedDict()
        self._databases: OrderedDict[frozenset[str], duckdb.DuckDBPyConnection] = OrderedDict()

    def _config(self) -> dict[str, Any]:
        return {**_LOCKED, "memory_limit": self._memory_limit, "threads": self._threads}

    def cursor(self) -> duckdb.DuckDBPyConnection:
        if self._database is None:
            self._database = duckdb.connect(
                config={
                    **self._config(),
                    "enable_external_access": False,
                    "lock_configuration": True,
                }
            )
        return self._database.cursor()

    @contextmanager
    def connect(
        self, sources: Mapping[str, Source], native_scan_bytes: int
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with ``sources`` registered under their internal names."""
        native = [s for s in sources.values() if isinstance(s, ParquetFiles) and s.files]
        dedicated = bool(native) and sum(s.size_bytes for s in native) >= native_scan_bytes
        conn = self._dedicated([f for s in native for f in s.files]) if dedicated else self.cursor()
        try:
            for name, source in sources.items():
                if isinstance(source, ParquetFiles):
                    schema = read_schema(source.schema)
                    if not (
                        dedicated
                        and source.files
                        and _parquet_view(conn, name, source.files, schema)
                    ):
                        conn.register(name, self._files(source.files, schema))
                elif isinstance(source, DeltaSnapshot):
                    conn.register(name, self._delta(source))
                elif isinstance(source, ArrowData):
                    conn.register(name, pa.ipc.open_stream(source.ipc).read_all())
                else:  # pragma: no cover - the server sends only the kinds above
                    raise TypeError(f"unknown source {type(source).__name__}")
            yield conn
        finally:
            conn.close()

    def _dedicated(self, paths: Sequence[str]) -> duckdb.DuckDBPyConnection:
        """A connection to a database that may open only ``paths``, locked (kept for the
        next statement authorized for exactly these files)."""
        key = frozenset(paths)
        database = self._databases.get(key)
        if database is None:
            database = self._open_dedicated(sorted(key))
            self._databases[key] = database
            while len(self._databases) > _CACHED_DATABASES:
                self._databases.popitem(last=False)[1].close()
        else:
            self._databases.move_to_end(key)
        return database.cursor()

    def _open_dedicated(self, paths: list[str]) -> duckdb.DuckDBPyConnection:
        database = duckdb.connect(config=self._config())
        try:
            database.execute("SET allowed_paths = $paths", {"paths": paths})
            database.execute("SET enable_external_access = false")
            database.execute("SET lock_configuration = true")
        except BaseException:
            database.close()
            raise
        return database

    def _cached(self, key: tuple[Any, ...], make: Any) -> ds.Dataset:
        dataset = self._datasets.get(key)
        if dataset is None:
            dataset = make()
            self._datasets[key] = dataset
            while len(self._datasets) > _CACHED_DATASETS:
                self._datasets.popitem(last=False)
        else:
            self._datasets.move_to_end(key)
        return dataset

    def _files(self, files: tuple[str, ...], schema: pa.Schema) -> ds.Dataset:
        return self._cached(
            ("files", files, schema),
            lambda: ds.dataset(list(files), schema=schema, format="parquet"),
        )

    def _delta(self, snapshot: DeltaSnapshot) -> ds.Dataset:
        from deltalake import DeltaTable  # only tables DuckDB cannot scan need it

        options = self._storage_options if "://" in snapshot.location else {}
        return self._cached(
            ("delta", snapshot.location, snapshot.version),
            lambda: DeltaTable(
                snapshot.location, version=snapshot.version, storage_options=options or None
            ).to_pyarrow_dataset(),
        )

    def close(self) -> None:
        if self._database is not None:
            self._database.close()
            self._database = None
        while self._databases:
            self._databases.popitem()[1].close()
        self._datasets.clear()


def _parquet_view(
    conn: duckdb.DuckDBPyConnection, name: str, files: Sequence[str], schema: pa.Schema
) -> bool:
    """Registers ``name`` as a native scan of the snapshot's files, with the table's columns:
    a temporary view, which only this connection sees.

    ``False`` when the files do not hold every column (a column added later and not yet
    written): the caller then registers the Arrow dataset, which fills it with nulls.
    """
    columns = ", ".join(_quoted(c) for c in schema.names)
    paths = ", ".join(_literal(f) for f in files)
    try:
        conn.execute(
            f"CREATE TEMPORARY VIEW {_quoted(name)} AS SELECT {columns} "
            f"FROM read_parquet([{paths}], union_by_name = true)"
        )
    except duckdb.BinderException:
        return False
    return True


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
