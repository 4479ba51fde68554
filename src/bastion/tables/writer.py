"""The durable table writer: every platform-produced row goes WAL → batched Delta append.

``append`` serialises a record, checks it names only columns of its table, and writes it to
the table's write-ahead log with one ``os.write``. When ``append`` returns, the row is
*acknowledged*: it is in the OS page cache and survives ``kill -9`` of the process (it is
fsync'd in batches by a background thread for power-loss durability, or on every append
with ``fsync_interval_s=0``). A background thread seals a table's active segment when it
holds ``flush_rows`` rows, or when any table's oldest row is ``flush_interval_s`` old (then
every table's, so that commits come together), and appends the sealed segments to Delta as
one commit tagged with the Delta application transaction ``(writer id, last segment)``;
only then are the segments deleted. After a crash the next writer on the same WAL directory
replays what is left, skipping segments the table says were already committed, so every
acknowledged row lands exactly once. See ``docs/writer.md``.

>>> import pyarrow as pa, tempfile
>>> home = tempfile.mkdtemp()
>>> spec = TableSpec("system.access.audit", home + "/audit",
...                  pa.schema([("event_id", pa.string()), ("action", pa.string())]),
...                  key="event_id")
>>> writer = DurableWriter(home + "/wal")
>>> writer.register(spec)
>>> writer.append("system.access.audit", {"event_id": "e1", "action": "login"})
>>> writer.flush()
1
>>> writer.stats().tables["system.access.audit"].pending
0
>>> writer.close()
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import orjson
import pyarrow as pa
from deltalake import DeltaTable

from bastion.clock import Clock, SystemClock
from bastion.errors import Conflict, InvalidRequest, NotFound, Unavailable
from bastion.tables import delta, wal
from bastion.tables.committer import Committer
from bastion.tables.writer_convert import records_to_arrow

logger = logging.getLogger(__name__)

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC
_CONVERT_SLICE = 4096


class WriterOverloaded(Unavailable):
    """``append`` refused a row because the table's WAL backlog is full (back-pressure).

    The row was not written; the caller still holds it and decides (retry, fail the request).
    """

    error_code = "TEMPORARILY_UNAVAILABLE"


class WriterFlushFailed(Unavailable):
    """``flush`` could not commit some tables; their rows stay in the WAL and are retried."""


class RowExpander(Protocol):
    """A table whose rows may be logged in a compact form and expanded only when committed.

    A log record ``{key: ..., field: ...}`` (the spec's key column and the expander's
    ``field``, nothing else) stands for the rows :meth:`rows` returns for it; other records
    are rows as they are. Expansion must be deterministic (a replayed record yields the same
    rows) and must not depend on the process it runs in: it runs where the commit runs, the
    writer's helper process by default. A spec travels there by pickle, and so does this.
    """

    @property
    def field(self) -> str: ...

    def rows(self, record: Mapping[str, Any]) -> list[dict[str, Any]]: ...

    def table(self, records: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
        """The rows of all ``records`` (compact ones) as one table of ``schema``; raises if
        any record cannot be expanded or converted (the writer then expands them one by one
        with :meth:`rows`, to quarantine just those)."""
        ...


@dataclass(frozen=True)
class TableSpec:
    """A Delta table the writer appends to.

    ``name`` is the catalog name (``system.access.audit``); ``uri`` the Delta location (a path
    or an object-store URI); ``key`` the column rows are de-duplicated by on replay.
    """

    name: str
    uri: str
    schema: pa.Schema
    key: str
    partition_by: tuple[str, ...] = ()
    storage_options: Mapping[str, str] | None = field(default=None, repr=False)
    """delta-rs options for ``uri`` (an object store's endpoint and credentials: never shown)."""
    expander: RowExpander | None = None
    """Records in a compact form and how they become rows (see :class:`RowExpander`)."""
    field_names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _TABLE_NAME.match(self.name):
            raise InvalidRequest(f"table name {self.name!r} may use only letters, digits, _ . -")
        names = frozenset(self.schema.names)
        if self.key not in names:
            raise InvalidRequest(f"key column {self.key!r} is not in the schema of {self.name}")
        key_type = self.schema.field(self.key).type
        if not (pa.types.is_string(key_type) or pa.types.is_integer(key_type)):
            raise InvalidRequest(f"key column {self.key!r} must be a string or integer column")
        missing = [c for c in self.partition_by if c not in names]
        if missing:
            raise InvalidRequest(f"partition columns {missing} are not in the schema")
        object.__setattr__(self, "partition_by", tuple(self.partition_by))
        if self.expander is not None:
            if self.expander.field in names:
                raise InvalidRequest(f"{self.expander.field!r} is a column of {self.name}")
            names |= {self.expander.field}
        object.__setattr__(self, "field_names", names)
        # A plain dict (or None): the spec travels to the commit process by pickle, and a
        # read-only view (``TableStorage.options``) cannot be pickled.
        options = dict(self.storage_options) if self.storage_options else None
        object.__setattr__(self, "storage_options", options)


@dataclass(frozen=True)
class TableStats:
    """Row counts of one table. ``written``, ``quarantined``, ``deduplicated``, ``rejected``
    and ``commit_errors`` count since this writer started; ``pending`` and ``failed`` are now."""

    table: str
    written: int = 0
    """Rows committed to Delta."""
    pending: int = 0
    """Acknowledged rows in the WAL, not yet in Delta (includes ``failed``)."""
    failed: int = 0
    """Pending rows whose last Delta commit failed; kept in the WAL and retried with backoff."""
    quarantined: int = 0
    """Rows that cannot be converted to the schema, moved to the table's dead-letter files."""
    deduplicated: int = 0
    """Rows not written because an earlier row of the same batch had the same key."""
    rejected: int = 0
    """Appends refused by back-pressure (:class:`WriterOverloaded` raised to the caller)."""
    commit_errors: int = 0
    """Failed Delta commit attempts."""
    compacted: int = 0
    """Small Delta files rewritten into bigger ones (``delta.compact_small_files``)."""
    last_error: str | None = None


@dataclass(frozen=True)
class WriterStats:
    """Totals over every table, and each table's :class:`TableStats`."""

    written: int
    pending: int
    failed: int
    quarantined: int
    deduplicated: int
    rejected: int
    commit_errors: int
    compacted: int
    tables: Mapping[str, TableStats]

    @classmethod
    def of(cls, tables: Iterable[TableStats]) -> WriterStats:
        by_name = {t.table: t for t in tables}
        counts = {
            name: sum(getattr(t, name) for t in by_name.values())
            for name in (
                "written",
                "pending",
                "failed",
                "quarantined",
                "deduplicated",
                "rejected",
                "commit_errors",
                "compacted",
            )
        }
        return cls(**counts, tables=by_name)

    def prometheus(self, prefix: str = "bastion_table_writer") -> str:
        """The per-table counts in Prometheus text format, for the server's ``/metrics``."""
        lines: list[str] = []
        for name, kind, help_text in _METRICS:
            metric = f"{prefix}_{name}" + ("_total" if kind == "counter" else "")
            lines.append(f"# HELP {metric} {help_text}")
            lines.append(f"# TYPE {metric} {kind}")
            for table, stats in sorted(self.tables.items()):
                lines.append(f'{metric}{{table="{table}"}} {getattr(stats, name)}')
        return "\n".join(lines) + "\n"


def _convert(
    records: Sequence[Mapping[str, Any]], schema: pa.Schema
) -> tuple[pa.Table, dict[int, str]]:
    """:func:`records_to_arrow` in slices, so that a flusher thread never holds the GIL for
    long (in a server, the gateway shares it)."""
    if len(records) <= _CONVERT_SLICE:
        return records_to_arrow(records, schema)
    tables: list[pa.Table] = []
    bad: dict[int, str] = {}
    for start in range(0, len(records), _CONVERT_SLICE):
        table, slice_bad = records_to_arrow(records[start : start + _CONVERT_SLICE], schema)
        tables.append(table)
        bad.update((start + i, reason) for i, reason in slice_bad.items())
    return pa.concat_tables(tables), bad


_METRICS = (
    ("written", "counter", "Rows committed to Delta."),
    ("pending", "gauge", "Acknowledged rows in the WAL, not yet in Delta."),
    ("failed", "gauge", "Pending rows whose last Delta commit failed (retried)."),
    ("quarantined", "counter", "Rows moved to the dead-letter files."),
    ("deduplicated", "counter", "Rows skipped because their key repeated in a batch."),
    ("rejected", "counter", "Appends refused by back-pressure."),
    ("commit_errors", "counter", "Failed Delta commit attempts."),
    ("compacted", "counter", "Small Delta files rewritten into bigger ones."),
)


@dataclass
class _Sealed:
    """A segment no longer written to, waiting for its Delta commit."""

    seq: int
    rows: int
    records: list[Mapping[str, Any]] | None = None
    """The appended records themselves while they fit in memory (saves re-parsing the WAL)."""


class _Table:
    """Runtime state of one registered table. ``lock`` guards the active segment and counters;
    ``commit_lock`` makes one thread at a time move this table's segments to Delta."""

    def __init__(self, spec: TableSpec, directory: Path) -> None:
        self.spec = spec
        self.directory = directory
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)
        self.commit_lock = threading.Lock()
        self.active: wal.ActiveSegment | None = None
        self.sealed: list[_Sealed] = []  # oldest first
        self.buffer: list[Mapping[str, Any]] | None = []  # records of the active segment
        self.buffered = 0  # records held in memory, active and sealed
        self.known_high = 0  # highest segment number this writer may have committed
        self.dir_dirty = False
        self.delta_table: DeltaTable | None = None
        self.check_txn = True
        self.retry_at = 0.0
        self.consecutive_failures = 0
        self.pending = 0
        self.written = 0
        self.failed = 0
        self.quarantined = 0
        self.deduplicated = 0
        self.rejected = 0
        self.commit_errors = 0
        self.compacted = 0
        self.last_error: str | None = None

    def stats(self) -> TableStats:
        with self.lock:
            return TableStats(
                table=self.spec.name,
                written=self.written,
                pending=self.pending,
                failed=self.failed,
                quarantined=self.quarantined,
                deduplicated=self.deduplicated,
                rejected=self.rejected,
                commit_errors=self.commit_errors,
                compacted=self.compacted,
                last_error=self.last_error,
            )


class DurableWriter:
    """Appends records to Delta tables through a crash-safe write-ahead log.

    Parameters:
        wal_dir: directory of the WAL; one writer process at a time (it is locked).
        flush_rows: seal and commit a table's segment once it holds this many rows.
        flush_interval_s: ... or once its oldest row is this old (by ``clock``).
        max_pending_rows: per table; beyond it ``append`` waits up to
            ``backpressure_timeout_s`` for the flusher, then raises :class:`WriterOverloaded`.
        fsync_interval_s: how often the background thread fsyncs the WAL; ``0`` fsyncs inside
            every ``append`` (acknowledged rows then survive power loss, at a cost per row).
        max_batch_rows: at most this many rows per Delta commit when a backlog is replayed.
        retry_backoff_s / max_retry_backoff_s: after a failed commit, wait this long (doubling,
            capped) before retrying that table.
        clock: time source for the flush and retry triggers (inject a ``ManualClock`` in tests).
        after_commit: called with ``(table name, segment number)`` right after each Delta commit
            and before its segments are deleted (an observation hook; tests crash here).
        commit_process: read back, convert and commit in a helper process
            (:mod:`bastion.tables.committer`) instead of this one; rows are then never kept in
            memory here. For servers, whose requests share this process's GIL.
        commit_nice: with ``commit_process``, run the helper this much nicer than this process
            (0–19): it yields a busy core to the requests' processes at once, and catches up
            when the load drops (``max_pending_rows`` still bounds how far it may fall behind).
        compact_min_files: after a commit, rewrite a table's small files once it holds this
            many (:func:`~bastion.tables.delta.compact_small_files`); 0, the default: never.
            Without it each commit costs more than the one before (delta-rs: time per commit
            grows with the table's files). At most one writer of a table may compact it at a
            time — delta-rs does not refuse a second rewrite of files another one already
            rewrote, and the rows would be duplicated — so a deployment turns it on in its
            leader only (:mod:`bastion.server.cluster`). May be changed while the writer runs.
    """

    def __init__(
        self,
        wal_dir: str | os.PathLike[str],
        *,
        flush_rows: int = 10_000,
        flush_interval_s: float = 2.0,
        max_pending_rows: int = 1_000_000,
        backpressure_timeout_s: float = 0.25,
        fsync_interval_s: float = 0.2,
        max_batch_rows: int = 200_000,
        retry_backoff_s: float = 0.5,
        max_retry_backoff_s: float = 60.0,
        clock: Clock | None = None,
        after_commit: Callable[[str, int], None] | None = None,
        commit_process: bool = False,
        commit_nice: int = 0,
        compact_min_files: int = 0,
    ) -> None:
        if flush_rows < 1 or max_pending_rows < flush_rows:
            raise InvalidRequest("need 1 <= flush_rows <= max_pending_rows")
        self.wal_dir = Path(wal_dir)
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self.max_pending_rows = max_pending_rows
        self.backpressure_timeout_s = backpressure_timeout_s
        self.fsync_interval_s = fsync_interval_s
        self.max_batch_rows = max_batch_rows
        self.retry_backoff_s = retry_backoff_s
        self.max_retry_backoff_s = max_retry_backoff_s
        self.clock: Clock = clock or SystemClock()
        self._max_buffered_rows = min(4 * flush_rows, max_pending_rows)
        self._after_commit = after_commit
        if not 0 <= commit_nice <= 19:
            raise InvalidRequest("commit_nice must be between 0 and 19")
        self._committer = Committer(nice=commit_nice) if commit_process else None
        self.compact_min_files = compact_min_files
        self._tables: dict[str, _Table] = {}
        self._registry_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False

        (self.wal_dir / "tables").mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.wal_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise Conflict(f"another writer is using the WAL directory {self.wal_dir}") from None
        self.writer_id = self._load_writer_id()
        self.app_id = f"bastion-writer-{self.writer_id}"

    def _load_writer_id(self) -> str:
        path = self.wal_dir / "WRITER_ID"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            writer_id = uuid.uuid4().hex
            wal.write_atomic(path, writer_id.encode() + b"\n")
            return writer_id

    # -- registration -------------------------------------------------------------------

    def register(self, spec: TableSpec) -> None:
        """Declare a table. Rows left in its WAL by an earlier process are queued for replay.

        Registering the same spec again is a no-op; a different spec under the same name
        raises :class:`Conflict`.
        """
        with self._registry_lock:
            existing = self._tables.get(spec.name)
            if existing is not None:
                if existing.spec != spec:
                    raise Conflict(f"table {spec.name} is already registered with another spec")
                return
            directory = self.wal_dir / "tables" / spec.name
            directory.mkdir(parents=True, exist_ok=True)
            t = _Table(spec, directory)
            if self._committer is not None:
                t.buffer = None  # the helper process reads the log; keep nothing here
            high = wal.read_committed(directory)
            for seq in wal.list_segments(directory):
                rows = wal.count_records(wal.segment_path(directory, seq))
                t.sealed.append(_Sealed(seq, rows))
                t.pending += rows
                high = max(high, seq)
            try:
                t.delta_table = delta.open_table(spec.uri, storage_options=spec.storage_options)
                if t.delta_table is not None:
                    high = max(high, t.delta_table.transaction_version(self.app_id) or 0)
            except Exception as exc:  # storage may be down at startup; checked again at commit
                logger.warning("could not read Delta table %s at startup: %s", spec.uri, exc)
            t.known_high = high
            t.active = wal.ActiveSegment(directory, high + 1)
            t.dir_dirty = True
            self._tables[spec.name] = t
            if t.sealed:
                logger.info("replaying %d WAL rows of %s", t.pending, spec.name)
                self._wake.set()

    def spec(self, name: str) -> TableSpec | None:
        """The spec ``name`` was registered with here, if it was."""
        t = self._tables.get(name)
        return t.spec if t is not None else None

    def _table(self, name: str) -> _Table:
        try:
            return self._tables[name]
        except KeyError:
            raise NotFound(f"table {name} is not registered with the writer") from None

    # -- the hot path -------------------------------------------------------------------

    def append(self, table_name: str, record: Mapping[str, Any]) -> None:
        """Acknowledge one row: when this returns it is in the WAL and will reach Delta.

        Raises :class:`InvalidRequest` for a record with unknown columns, no key or a value
        JSON cannot hold, and :class:`WriterOverloaded` under back-pressure.
        """
        t = self._table(table_name)
        self._write(t, self._encode(t.spec, record), (record,))

    def append_many(self, table_name: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Acknowledge several rows with one write (all or none of them)."""
        t = self._table(table_name)
        if records:
            self._write(t, b"".join(self._encode(t.spec, r) for r in records), records)

    @staticmethod
    def _encode(spec: TableSpec, record: Mapping[str, Any]) -> bytes:
        if not spec.field_names.issuperset(record):
            unknown = sorted(set(record) - spec.field_names)
            raise InvalidRequest(f"{spec.name} has no columns {unknown}")
        key = record.get(spec.key)
        if type(key) is not str and type(key) is not int:
            raise InvalidRequest(
                f"a row of {spec.name} needs its key column {spec.key!r} (a string or integer)"
            )
        if spec.expander is not None and spec.expander.field in record and len(record) != 2:
            raise InvalidRequest(
                f"a compact record of {spec.name} holds {spec.key!r} and "
                f"{spec.expander.field!r} only"
            )
        try:
            return orjson.dumps(record, option=_DUMPS_OPTIONS)
        except orjson.JSONEncodeError as exc:
            raise InvalidRequest(f"a row of {spec.name} cannot be logged: {exc}") from None

    def _write(self, t: _Table, data: bytes, records: Sequence[Mapping[str, Any]]) -> None:
        rows = len(records)
        with t.lock:
            if self._closed:
                raise Unavailable("the table writer is closed")
            if t.pending + rows > self.max_pending_rows and t.pending:
                self._wait_for_room(t, rows)
            active = t.active
            if active is None or self._closed:
                raise Unavailable("the table writer is closed")
            try:
                active.write(data, rows)
            except OSError as exc:
                raise Unavailable(f"could not write the WAL of {t.spec.name}: {exc}") from exc
            if active.rows == rows:
                active.first_row_at = self.clock.now()
            t.pending += rows
            buffer = t.buffer
            if buffer is not None:
                if t.buffered + rows <= self._max_buffered_rows:
                    buffer.extend(records)
                    t.buffered += rows
                else:  # a backlog: this segment will be read back from the WAL instead
                    t.buffered -= len(buffer)
                    t.buffer = None
            if self.fsync_interval_s <= 0:
                os.fsync(active.fd)
                active.synced_size = active.size
                if t.dir_dirty:
                    wal.fsync_path(t.directory)
                    t.dir_dirty = False
            if active.rows >= self.flush_rows and not self._wake.is_set():
                self._wake.set()

    def _wait_for_room(self, t: _Table, rows: int) -> None:
        """Called holding ``t.lock``: wait (bounded) for the flusher to commit, or raise."""
        deadline = time.monotonic() + self.backpressure_timeout_s
        self._wake.set()
        while t.pending + rows > self.max_pending_rows and t.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                t.rejected += rows
                raise WriterOverloaded(
                    f"{t.spec.name} has {t.pending} rows waiting for Delta "
                    f"(limit {self.max_pending_rows}); retry shortly"
                )
            t.room.wait(remaining)

    # -- flushing -----------------------------------------------------------------------

    def maybe_flush(self) -> int:
        """Commit every table whose size trigger fired and, once any table's oldest row is
        ``flush_interval_s`` old, every table with rows (what the flusher thread runs).

        Tables in retry backoff are skipped; failures are recorded, not raised. Returns the
        number of rows written.
        """
        now = self.clock.now()
        tables = [t for t in self._tables.values() if now >= t.retry_at]
        # One time trigger for all tables: once the oldest uncommitted row of any of them is
        # flush_interval_s old, every table with rows is committed in this round. Commits thus
        # come in one burst per interval, not one per table at scattered moments: each burst
        # costs requests served meanwhile some latency, whatever its size (docs/writer.md).
        oldest = now
        for t in tables:
            with t.lock:
                if t.active is not None and t.active.rows:
                    oldest = min(oldest, t.active.first_row_at)
        round_due = now - oldest >= self.flush_interval_s
        written = 0
        for t in tables:
            with t.lock:
                active = t.active
                due = bool(t.sealed) or (
                    active is not None
                    and active.rows > 0
                    and (active.rows >= self.flush_rows or round_due)
                )
            if due:
                with contextlib.suppress(Exception):  # recorded in the table's stats and logged
                    written += self._commit(t)
        return written

    def flush(self) -> int:
        """Commit every acknowledged row now (ignores triggers and backoff). Returns rows written.

        Raises :class:`WriterFlushFailed` naming the tables that could not be committed; their
        rows stay in the WAL. Other tables are still flushed.
        """
        written = 0
        errors: dict[str, Exception] = {}
        for t in list(self._tables.values()):
            try:
                written += self._commit(t)
            except Exception as exc:
                errors[t.spec.name] = exc
        if errors:
            detail = "; ".join(f"{name}: {exc}" for name, exc in errors.items())
            raise WriterFlushFailed(f"rows kept in the WAL for retry: {detail}")
        return written

    def _seal(self, t: _Table) -> None:
        with t.lock:
            active = t.active
            if active is None or (active.rows == 0 and active.size == 0):
                return
            t.active = wal.ActiveSegment(t.directory, active.seq + 1)
            t.dir_dirty = True
            t.sealed.append(_Sealed(active.seq, active.rows, t.buffer))
            t.buffer = [] if self._committer is None else None
        if active.synced_size < active.size:
            os.fsync(active.fd)
        active.close()

    def _commit(self, t: _Table) -> int:
        with t.commit_lock:
            written = 0
            try:
                self._seal(t)
                if t.sealed and t.check_txn:
                    self._skip_committed(t)
                while t.sealed:
                    chunk: list[_Sealed] = []
                    rows = 0
                    while t.sealed[len(chunk) :] and (not chunk or rows < self.max_batch_rows):
                        chunk.append(t.sealed[len(chunk)])
                        rows += chunk[-1].rows
                    written += self._commit_segments(t, chunk)
            except Exception as exc:
                self._record_failure(t, exc)
                raise
            with t.lock:
                t.failed = 0
                t.consecutive_failures = 0
            return written

    def _record_failure(self, t: _Table, exc: Exception) -> None:
        backoff = min(self.retry_backoff_s * 2**t.consecutive_failures, self.max_retry_backoff_s)
        with t.lock:
            t.consecutive_failures += 1
            t.commit_errors += 1
            t.failed = sum(s.rows for s in t.sealed)
            t.last_error = f"{type(exc).__name__}: {exc}"
            t.retry_at = self.clock.now() + backoff
            t.check_txn = True  # the failed commit may have landed after all
            t.delta_table = None
        logger.warning(
            "Delta commit of %s failed (%d rows kept in the WAL, retry in %.1fs): %s",
            t.spec.name,
            t.failed,
            backoff,
            t.last_error,
        )

    def _delta_table(self, t: _Table) -> DeltaTable:
        if t.delta_table is None:
            spec = t.spec
            t.delta_table = delta.create_table_if_missing(
                spec.uri,
                spec.schema,
                partition_by=spec.partition_by,
                name=spec.name,
                storage_options=spec.storage_options,
            )
        return t.delta_table

    def _skip_committed(self, t: _Table) -> None:
        """Retire sealed segments that the Delta table says are already committed."""
        table = self._delta_table(t)
        committed = delta.transaction_version(table, self.app_id) or 0
        if committed > t.known_high:
            raise Conflict(
                f"{t.spec.uri} records batch {committed} of {self.app_id}, newer than this "
                "WAL knows: two writers share a WAL id; rows stay in the WAL"
            )
        done = [s for s in t.sealed if s.seq <= committed]
        if done:
            logger.info(
                "%s: %d WAL segments were already committed to Delta", t.spec.name, len(done)
            )
            self._retire(t, done, committed, written=0)
        t.check_txn = False

    def _commit_segments(self, t: _Table, chunk: list[_Sealed], *, from_wal: bool = False) -> int:
        """Append the rows of ``chunk`` to Delta as one commit tagged with its last segment."""
        spec = t.spec
        if self._committer is not None:
            last = chunk[-1].seq
            # Before the attempt: a commit that lands without an answer (the helper died after
            # it) is then found by _skip_committed instead of looking like another writer's.
            t.known_high = max(t.known_high, last)
            t.delta_table = None  # the helper moves the table on: reopen before reading it
            done = self._committer.commit(
                spec, t.directory, [s.seq for s in chunk], self.app_id, self.compact_min_files
            )
            if done.written and self._after_commit is not None:
                self._after_commit(spec.name, last)
            self._retire(
                t,
                chunk,
                last,
                written=done.written,
                quarantined=done.quarantined,
                deduplicated=done.deduplicated,
                compacted=done.compacted,
            )
            return done.written
        records: list[Mapping[str, Any]] = []
        origins: list[int] = []
        dead: dict[int, list[dict[str, Any]]] = {}
        in_memory = False
        for segment in chunk:
            if segment.records is not None and not from_wal:
                in_memory = True
                records.extend(segment.records)
                origins.extend([segment.seq] * len(segment.records))
                continue
            contents = wal.read_segment(wal.segment_path(t.directory, segment.seq))
            records.extend(contents.records)
            origins.extend([segment.seq] * len(contents.records))
            for line, reason in contents.corrupt:
                entry = {"table": spec.name, "segment": segment.seq, "error": reason}
                entry["line"] = line.decode("utf-8", "replace")
                dead.setdefault(segment.seq, []).append(entry)
            if contents.torn_tail:
                logger.warning(
                    "%s: ignoring a torn last record in WAL segment %d (%d bytes, never "
                    "acknowledged)",
                    spec.name,
                    segment.seq,
                    len(contents.torn_tail),
                )

        seen: set[Any] = set()
        unique: list[Mapping[str, Any]] = []
        unique_origins: list[int] = []
        key = spec.key
        for record, seq in zip(records, origins, strict=True):
            k = record.get(key)
            if k in seen:
                continue
            seen.add(k)
            unique.append(record)
            unique_origins.append(seq)
        duplicates = len(records) - len(unique)

        table, bad = self._to_arrow(unique, spec)
        if bad and in_memory:
            # Quarantine what the WAL holds (the acknowledged form), not the live objects.
            return self._commit_segments(t, chunk, from_wal=True)
        for i, reason in bad.items():
            seq = unique_origins[i]
            entry = {"table": spec.name, "segment": seq, "error": reason, "record": unique[i]}
            dead.setdefault(seq, []).append(entry)
        for seq, entries in dead.items():
            path = wal.write_dead_letters(t.directory, seq, entries)
            logger.warning("%s: %d rows quarantined to %s", spec.name, len(entries), path)

        last_seq = chunk[-1].seq
        compacted = 0
        if table.num_rows:
            t.known_high = max(t.known_high, last_seq)
            target = self._delta_table(t)
            delta.append(
                target, table, partition_by=spec.partition_by, app_id=self.app_id, version=last_seq
            )
            if self._after_commit is not None:
                self._after_commit(spec.name, last_seq)
            compacted = delta.compact_after_commit(target, spec.name, self.compact_min_files)
        quarantined = sum(len(entries) for entries in dead.values())
        self._retire(
            t,
            chunk,
            last_seq,
            written=table.num_rows,
            quarantined=quarantined,
            deduplicated=duplicates,
            compacted=compacted,
        )
        return table.num_rows

    @staticmethod
    def _to_arrow(
        records: Sequence[Mapping[str, Any]], spec: TableSpec
    ) -> tuple[pa.Table, dict[int, str]]:
        """Records (compact ones expanded) → the table's rows, and the records that cannot be
        converted (index → reason). A compact record is kept or quarantined as a whole."""
        expander = spec.expander
        if expander is None:
            return _convert(records, spec.schema)
        field_name = expander.field
        compact = [i for i, record in enumerate(records) if field_name in record]
        if compact:
            step = _CONVERT_SLICE // 8  # records: a few rows each (the GIL, again)
            try:
                tables = [
                    expander.table([records[i] for i in compact[start : start + step]], spec.schema)
                    for start in range(0, len(compact), step)
                ]
            except Exception:  # some record is bad: expanded one by one below, to find it
                pass
            else:
                plain = [i for i, record in enumerate(records) if field_name not in record]
                table, bad_plain = _convert([records[i] for i in plain], spec.schema)
                bad_records = {plain[j]: reason for j, reason in bad_plain.items()}
                return pa.concat_tables([table, *tables]), bad_records
        rows: list[Mapping[str, Any]] = []
        origins: list[int] = []
        bad: dict[int, str] = {}
        for i, record in enumerate(records):
            if field_name not in record:
                rows.append(record)
                origins.append(i)
                continue
            try:
                expanded = expander.rows(record)
            except Exception as exc:  # a record this code cannot expand: quarantined
                bad[i] = f"cannot expand the {field_name!r} record: {type(exc).__name__}: {exc}"
                continue
            rows.extend(expanded)
            origins.extend([i] * len(expanded))
        table, bad_rows = _convert(rows, spec.schema)
        if bad_rows:
            for j, reason in bad_rows.items():
                bad.setdefault(origins[j], reason)
            kept = [row for row, i in zip(rows, origins, strict=True) if i not in bad]
            table, again = _convert(kept, spec.schema)
            if again:  # cannot happen unless conversion is order-dependent
                raise ValueError(f"rows failed conversion only in a second pass: {again}")
        return table, bad

    def _retire(
        self,
        t: _Table,
        chunk: list[_Sealed],
        last_seq: int,
        *,
        written: int,
        quarantined: int = 0,
        deduplicated: int = 0,
        compacted: int = 0,
    ) -> None:
        wal.write_committed(t.directory, last_seq)
        for segment in chunk:
            wal.segment_path(t.directory, segment.seq).unlink(missing_ok=True)
        retired = {segment.seq for segment in chunk}
        with t.lock:
            t.sealed = [s for s in t.sealed if s.seq not in retired]
            t.pending -= sum(s.rows for s in chunk)
            t.buffered -= sum(len(s.records) for s in chunk if s.records is not None)
            t.written += written
            t.quarantined += quarantined
            t.deduplicated += deduplicated
            t.compacted += compacted
            t.room.notify_all()

    # -- background threads and lifecycle -----------------------------------------------

    def start(self) -> DurableWriter:
        """Start the flusher and fsync threads, and the commit helper if any (idempotent)."""
        if not self._threads:
            if self._committer is not None:
                self._committer.start()
            self._threads = [
                threading.Thread(target=self._flush_loop, name="bastion-writer-flush", daemon=True),
                threading.Thread(target=self._fsync_loop, name="bastion-writer-fsync", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
        return self

    def _flush_loop(self) -> None:
        poll = max(0.01, min(self.flush_interval_s / 4, 0.25))
        while not self._stop.is_set():
            self._wake.wait(poll)
            self._wake.clear()
            if not self._stop.is_set():
                self.maybe_flush()

    def _fsync_loop(self) -> None:
        interval = self.fsync_interval_s if self.fsync_interval_s > 0 else 1.0
        while not self._stop.wait(interval):
            self.sync()

    def sync(self) -> None:
        """fsync every table's active segment (and new directory entries) now."""
        for t in list(self._tables.values()):
            with t.lock:
                active = t.active
                if active is None:
                    continue
                size = active.size
                fd = os.dup(active.fd) if size > active.synced_size else -1
                dir_dirty, t.dir_dirty = t.dir_dirty, False
            if fd >= 0:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                with t.lock:
                    if t.active is active:
                        active.synced_size = max(active.synced_size, size)
            if dir_dirty:
                wal.fsync_path(t.directory)

    def compact(self, name: str) -> int:
        """Compact table ``name``'s small Delta files now if it holds ``compact_min_files`` of
        them (nothing when that is 0); returns the files rewritten. Never raises for the
        compaction itself (it is logged). For the deployment's one compactor, periodically:
        compaction after commits only reaches the tables this writer commits to."""
        min_files = self.compact_min_files
        if min_files <= 0:
            return 0
        done = self._maintain(name, min_files)
        t = self._table(name)
        with t.lock:
            t.compacted += done
        return done

    def vacuum(self, name: str) -> int:
        """Delete table ``name``'s files that compactions replaced longer ago than its
        retention (``delta.vacuum_expired``); returns how many. Never raises for the vacuum
        itself. For the deployment's one maintainer, like :meth:`compact`."""
        return self._maintain(name, None)

    def _maintain(self, name: str, compact_min_files: int | None) -> int:
        t = self._table(name)
        with t.commit_lock:
            if self._committer is not None:
                return self._committer.maintain(t.spec, compact_min_files)
            spec = t.spec
            try:  # a table with no rows yet is left alone, not created
                table = t.delta_table or delta.open_table(
                    spec.uri, storage_options=spec.storage_options
                )
            except Exception as exc:
                logger.info("%s: not maintained, cannot open it: %s", spec.name, exc)
                return 0
            return delta.maintain(table, spec.name, compact_min_files)

    def tables(self) -> list[str]:
        """Names of the registered tables."""
        return list(self._tables)

    def stats(self) -> WriterStats:
        return WriterStats.of(t.stats() for t in list(self._tables.values()))

    def close(self) -> None:
        """Stop the threads, flush everything, release the WAL directory.

        Rows that cannot be committed now stay in the WAL for the next writer (logged).
        """
        if self._closed:
            return
        with self._registry_lock:
            self._closed = True  # appends now raise; everything acknowledged gets flushed
            for t in self._tables.values():
                with t.lock:
                    t.room.notify_all()
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join()
        try:
            self.flush()
        except WriterFlushFailed as exc:
            logger.warning("closing the table writer with rows left in the WAL: %s", exc)
        if self._committer is not None:
            self._committer.close()
        with self._registry_lock:
            for t in self._tables.values():
                with t.lock:
                    active, t.active = t.active, None
                if active is not None:
                    os.fsync(active.fd)
                    active.close()
                    if active.size == 0:
                        active.path.unlink(missing_ok=True)
        os.close(self._lock_fd)

    def __enter__(self) -> DurableWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
