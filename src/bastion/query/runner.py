"""Run one rewritten query in a fresh, locked-down DuckDB connection.

The connection sees only the sources of the plan, cannot reach files, extensions or the
network (``enable_external_access=false``), cannot change its settings
(``lock_configuration=true``), and is interrupted by a watchdog at the deadline or when the
caller's cancel event is set.

Small statements run in one shared database that can open no file at all: their Delta
tables come in as Arrow datasets. A statement that scans more than ``native_scan_bytes`` of
Parquet gets a database of its own whose ``allowed_paths`` are exactly the data files of the
snapshots it was authorized to read, so DuckDB's own Parquet reader (parallel, with
row-group statistics) does the scan; that database is then locked like the shared one and
thrown away after the statement (opening one costs ~25 ms, small beside such a scan).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from bastion.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ResourceExhausted,
    StatementCanceled,
)
from bastion.query.catalog import DeltaSource


@dataclass(frozen=True)
class Limits:
    sandbox: Sandbox
    memory_limit: str
    timeout_s: float


NATIVE_SCAN_BYTES = 32 * 1024 * 1024
_LOCKED: dict[str, Any] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
}


_INTERNAL = re.compile(r"\b__(?:t|cte)\d+\b")


class _Watchdog:
    """Interrupts ``conn`` at ``deadline`` or when ``cancel`` is set, until stopped."""

    def __init__(
        self, conn: duckdb.DuckDBPyConnection, deadline: float, cancel: threading.Event | None
    ) -> None:
        self._conn = conn
        self._deadline = deadline
        self._cancel = cancel
        self._done = threading.Event()
        self.reason: str | None = None
        self._thread = threading.Thread(target=self._run, name="sql-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            remaining = self._deadline - time.monotonic()
            step = min(remaining, 0.05) if self._cancel is not None else remaining
            if self._done.wait(max(step, 0.0)):
                return
            if self._cancel is not None and self._cancel.is_set():
                self.reason = self.reason or "cancel"
            elif time.monotonic() >= self._deadline:
                self.reason = self.reason or "timeout"
            if self.reason is not None:
                # Repeat: an interrupt that lands between two DuckDB calls is lost.
                self._conn.interrupt()
                if self._done.wait(0.05):
                    return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


class Sandbox:
    """Locked-down DuckDB databases; each statement gets a fresh connection to one.

    Small statements get a cursor of the shared in-memory database, which can open no
    file; what one statement registers there (its Arrow sources) no other statement sees,
    and its memory limit and thread count apply across concurrent statements. A statement
    scanning ``native_scan_bytes`` or more of Parquet gets a database of its own that can
    open only those files; at most ``scan_slots`` exist at once, so large scans do not
    multiply the memory limit.
    """

    def __init__(
        self,
        memory_limit: str,
        threads: int,
        *,
        native_scan_bytes: int = NATIVE_SCAN_BYTES,
        scan_slots: int = 2,
    ) -> None:
        self._lock = threading.Lock()
        self._memory_limit = memory_limit
        self._threads = threads
        self.native_scan_bytes = native_scan_bytes
        self._database: duckdb.DuckDBPyConnection | None = None
        self._slots = threading.BoundedSemaphore(scan_slots)

    def _config(self) -> dict[str, Any]:
        return {**_LOCKED, "memory_limit": self._memory_limit, "threads": self._threads}

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
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
        self, sources: Mapping[str, Any], deadline: float
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with ``sources`` registered under their internal names."""
        native = [s for s in sources.values() if isinstance(s, DeltaSource) and s.files]
        dedicated = bool(native) and sum(s.size_bytes for s in native) >= self.native_scan_bytes
        if dedicated:
            conn = self._dedicated([f for s in native for f in s.files or ()], deadline)
        else:
            conn = self.cursor()
        try:
            for name, data in sources.items():
                if isinstance(data, DeltaSource):
                    if not (dedicated and data.files and _parquet_view(conn, name, data)):
                        conn.register(name, data.dataset())
                else:
                    conn.register(name, data)
            yield conn
        finally:
            conn.close()
            if dedicated:
                self._slots.release()

    def _dedicated(self, paths: Sequence[str], deadline: float) -> duckdb.DuckDBPyConnection:
        """A new database that may open only ``paths``, locked (waits for a scan slot)."""
        if not self._slots.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            raise DeadlineExceeded(
                "The statement timed out waiting for other large scans to finish."
            )
        try:
            database = duckdb.connect(config=self._config())
            try:
                database.execute("SET allowed_paths = $paths", {"paths": list(paths)})
                database.execute("SET enable_external_access = false")
                database.execute("SET lock_configuration = true")
            except BaseException:
                database.close()
                raise
        except BaseException:
            self._slots.release()
            raise
        return database

    def close(self) -> None:
        with self._lock:
            if self._database is not None:
                self._database.close()
                self._database = None


def _parquet_view(conn: duckdb.DuckDBPyConnection, name: str, source: DeltaSource) -> bool:
    """Registers ``name`` as a native scan of the snapshot's files, with the table's columns.

    ``False`` when the files do not hold every column (a column added later and not yet
    written): the caller then registers the Arrow dataset, which fills it with nulls.
    """
    try:
        relation = conn.read_parquet(list(source.files or ()), union_by_name=True)
        relation.project(", ".join(_quoted(c) for c in source.columns)).to_view(name)
    except duckdb.BinderException:
        return False
    return True


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def run(
    sql: str,
    sources: Mapping[str, Any],
    parameters: Mapping[str, Any],
    limits: Limits,
    *,
    max_rows: int | None,
    cancel: threading.Event | None = None,
    public_names: Mapping[str, str] | None = None,
) -> tuple[pa.Table, bool]:
    """Rows of ``sql`` (at most ``max_rows``; ``None``: all) and whether more were cut off."""
    if cancel is not None and cancel.is_set():
        raise StatementCanceled("The statement was cancelled before it started.")
    deadline = time.monotonic() + limits.timeout_s
    try:
        with limits.sandbox.connect(sources, deadline) as conn:
            watchdog = _Watchdog(conn, deadline, cancel)
            try:
                return _fetch(conn, sql, parameters, max_rows)
            except duckdb.InterruptException:
                if watchdog.reason == "cancel":
                    raise StatementCanceled("The statement was cancelled.") from None
                raise DeadlineExceeded(
                    f"The statement ran longer than its {limits.timeout_s:g} s timeout and was "
                    "cancelled; narrow the query or raise the timeout."
                ) from None
            finally:
                watchdog.stop()
    except duckdb.OutOfMemoryException:
        raise ResourceExhausted(
            f"The statement needed more than its {limits.memory_limit} memory limit; "
            "aggregate or filter more, or ask for a higher limit."
        ) from None
    except duckdb.Error as error:
        raise InvalidRequest(_public_message(str(error), public_names or {})) from None


def _fetch(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    parameters: Mapping[str, Any],
    max_rows: int | None,
) -> tuple[pa.Table, bool]:
    relation = conn.sql(sql, params=dict(parameters)) if parameters else conn.sql(sql)
    if relation is None:
        raise InvalidRequest("The statement returned no result.")
    reader = relation.to_arrow_reader(8192)
    batches: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        if max_rows is not None and count + batch.num_rows > max_rows:
            batches.append(batch.slice(0, max_rows - count))
            return pa.Table.from_batches(batches, schema=reader.schema), True
        batches.append(batch)
        count += batch.num_rows
    return pa.Table.from_batches(batches, schema=reader.schema), False


def _public_message(message: str, public_names: Mapping[str, str]) -> str:
    """DuckDB's message with internal source names replaced by catalog names."""

    def replace(match: re.Match[str]) -> str:
        return public_names.get(match.group(0), "subquery")

    return _INTERNAL.sub(replace, message.split("\n\nLINE")[0]).strip()
