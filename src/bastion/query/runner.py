"""Run one rewritten query in a fresh, locked-down DuckDB connection.

The connection sees only the Arrow sources of the plan, cannot reach files, extensions or
the network (``enable_external_access=false``), cannot change its settings
(``lock_configuration=true``), and is interrupted by a watchdog at the deadline or when the
caller's cancel event is set.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
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


@dataclass(frozen=True)
class Limits:
    sandbox: Sandbox
    memory_limit: str
    timeout_s: float


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
    """An empty in-memory DuckDB database, locked down; each statement gets its own cursor.

    A cursor is a fresh connection to the database: what one statement registers (its
    Arrow sources, as temporary views) no other statement sees. Nothing is ever created in
    the database itself, since only checked SELECTs run there. The memory limit and thread
    count apply to the database as a whole, across concurrent statements.
    """

    def __init__(self, memory_limit: str, threads: int) -> None:
        self._lock = threading.Lock()
        self._memory_limit = memory_limit
        self._threads = threads
        self._database: duckdb.DuckDBPyConnection | None = None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._database is None:
                self._database = duckdb.connect(
                    config={
                        "enable_external_access": False,
                        "autoinstall_known_extensions": False,
                        "autoload_known_extensions": False,
                        "python_enable_replacements": False,
                        "memory_limit": self._memory_limit,
                        "threads": self._threads,
                        "lock_configuration": True,
                    }
                )
            return self._database.cursor()

    def close(self) -> None:
        with self._lock:
            if self._database is not None:
                self._database.close()
                self._database = None


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
    conn = limits.sandbox.cursor()
    try:
        for name, data in sources.items():
            conn.register(name, data)
        watchdog = _Watchdog(conn, deadline, cancel)
        try:
            relation = conn.sql(sql, params=dict(parameters)) if parameters else conn.sql(sql)
            if relation is None:
                raise InvalidRequest("The statement returned no result.")
            reader = relation.to_arrow_reader(8192)
            batches: list[pa.RecordBatch] = []
            count = 0
            truncated = False
            for batch in reader:
                if max_rows is not None and count + batch.num_rows > max_rows:
                    batches.append(batch.slice(0, max_rows - count))
                    truncated = True
                    break
                batches.append(batch)
                count += batch.num_rows
            table = pa.Table.from_batches(batches, schema=reader.schema)
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
    finally:
        conn.close()
    return table, truncated


def _public_message(message: str, public_names: Mapping[str, str]) -> str:
    """DuckDB's message with internal source names replaced by catalog names."""

    def replace(match: re.Match[str]) -> str:
        return public_names.get(match.group(0), "subquery")

    return _INTERNAL.sub(replace, message.split("\n\nLINE")[0]).strip()
