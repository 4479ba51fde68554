"""Delta commits in a helper process, so the server's GIL only ever appends to the log.

A :class:`~bastion.tables.writer.DurableWriter` built with ``commit_process=True`` hands each
batch of sealed write-ahead-log segments to :class:`Committer`: one child process (spawned,
so it shares nothing with the server but the files) reads the segments back, drops rows
already seen, converts them to Arrow, quarantines rows that do not fit, and appends them to
Delta as one commit tagged ``(app id, last segment)`` — exactly what the writer does in
process. The parent waits for the answer with the GIL released, then retires the segments.
Nothing about durability changes: the rows are in the log before the child sees them, and a
child that dies or fails leaves them there for the next try (a new child is started).

Why: profiling the gateway at concurrency 1 (``benchmarks/stalls.py``) found the flush
thread's Arrow conversion and Delta commit, and the cyclic GC passes over the rows it kept in
memory for them, to be the largest in-process causes of the event loop's stalls.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bastion.tables import delta, wal

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from bastion.tables.writer import TableSpec

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Committed:
    written: int
    quarantined: int
    deduplicated: int
    compacted: int = 0


class Committer:
    """One helper process that commits batches of sealed segments (started on first use)."""

    def __init__(self, nice: int = 0) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._nice = nice

    def start(self) -> None:
        """Start the helper now and let it import what it needs (about a second of CPU), so
        that this happens while the server starts rather than on its first commit, under load.
        Returns at once."""
        self._executor().submit(_ready)

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_serve,
                    initargs=(os.getpid(), self._nice),
                )
            return self._pool

    def commit(
        self,
        spec: TableSpec,
        directory: Path,
        seqs: list[int],
        app_id: str,
        compact_min_files: int = 0,
    ) -> Committed:
        return self._run(commit_segments, spec, str(directory), seqs, app_id, compact_min_files)

    def maintain(self, spec: TableSpec, compact_min_files: int | None) -> int:
        """``delta.maintain`` of the table, in the helper."""
        return self._run(maintain_table, spec, compact_min_files)

    def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        pool = self._executor()
        job = pool.submit(fn, *args)
        try:
            return job.result()
        except BrokenProcessPool:
            with self._lock:  # the child died: the next call gets a new one
                if self._pool is pool:
                    self._pool = None
            raise

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


_tables: dict[str, DeltaTable] = {}  # the child's open tables, by URI
_parent: int | None = None


def _serve(parent: int, nice: int) -> None:
    """In the helper process, first: exit as soon as the writer's process is gone (however
    it died), so a restarted writer never races a commit of the same segments. A terminal's
    Ctrl-C and a service manager's SIGTERM reach the whole process group: they are the
    writer's to handle, which then commits what is left through this process and stops it
    (were it to die first, a clean stop would leave rows in the log for the next start).

    ``nice``: lower this process's CPU priority by that much. Its work can wait a little;
    the server's requests cannot — on a busy core the kernel then runs a server process that
    wakes up for a request at once instead of finishing the helper's time slice first.
    """
    global _parent
    _parent = parent
    if nice > 0:
        os.nice(nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.1)
        os._exit(0)

    threading.Thread(target=watch, name="bastion-committer-parent", daemon=True).start()


def _ready() -> None:
    """In the helper process: import what commits need."""
    import bastion.tables.writer  # noqa: F401


def maintain_table(spec: TableSpec, compact_min_files: int | None) -> int:
    """In the helper process: :func:`bastion.tables.delta.maintain` of the table (a table
    with no rows yet is left alone, not created)."""
    if _parent is not None and os.getppid() != _parent:
        return 0
    target = _tables.get(spec.uri)
    if target is None:
        try:
            target = delta.open_table(spec.uri, storage_options=spec.storage_options)
        except Exception as exc:
            logger.info("%s: not maintained, the table cannot be opened: %s", spec.name, exc)
            return 0
        if target is not None:
            _tables[spec.uri] = target
    return delta.maintain(target, spec.name, compact_min_files)


def commit_segments(
    spec: TableSpec,
    directory: str,
    seqs: list[int],
    app_id: str,
    compact_min_files: int = 0,
) -> Committed:
    """In the helper process: segments ``seqs`` of the table's log → one Delta commit (then
    the table's small files compacted, when there are ``compact_min_files`` of them).

    The cyclic garbage collector is off meanwhile: a batch is tens of thousands of fresh
    records and rows, freed by reference counting, which its passes would only walk again
    and again (10–20 % of the conversion's time, measured).
    """
    gc.disable()
    try:
        return _commit_segments(spec, directory, seqs, app_id, compact_min_files)
    finally:
        gc.enable()


def _commit_segments(
    spec: TableSpec, directory: str, seqs: list[int], app_id: str, compact_min_files: int
) -> Committed:
    from bastion.tables.writer import DurableWriter  # the child imports the writer lazily

    folder = Path(directory)
    records: list[Any] = []
    origins: list[int] = []
    dead: dict[int, list[dict[str, Any]]] = {}
    for seq in seqs:
        contents = wal.read_segment(wal.segment_path(folder, seq))
        records.extend(contents.records)
        origins.extend([seq] * len(contents.records))
        for line, reason in contents.corrupt:
            entry = {"table": spec.name, "segment": seq, "error": reason}
            entry["line"] = line.decode("utf-8", "replace")
            dead.setdefault(seq, []).append(entry)
    seen: set[Any] = set()
    unique: list[Any] = []
    unique_origins: list[int] = []
    for record, seq in zip(records, origins, strict=True):
        key = record.get(spec.key)
        if key not in seen:
            seen.add(key)
            unique.append(record)
            unique_origins.append(seq)
    table, bad = DurableWriter._to_arrow(unique, spec)
    for i, reason in bad.items():
        entry = {"table": spec.name, "segment": unique_origins[i], "error": reason}
        entry["record"] = unique[i]
        dead.setdefault(unique_origins[i], []).append(entry)
    for seq, entries in dead.items():
        path = wal.write_dead_letters(folder, seq, entries)
        logger.warning("%s: %d rows quarantined to %s", spec.name, len(entries), path)
    compacted = 0
    if table.num_rows:
        if _parent is not None and os.getppid() != _parent:
            raise RuntimeError("the writer's process is gone; its successor commits these rows")
        target = _tables.get(spec.uri)
        if target is None:
            target = delta.create_table_if_missing(
                spec.uri,
                spec.schema,
                partition_by=spec.partition_by,
                name=spec.name,
                storage_options=spec.storage_options,
            )
        try:
            delta.append(
                target, table, partition_by=spec.partition_by, app_id=app_id, version=seqs[-1]
            )
        except Exception:
            _tables.pop(spec.uri, None)  # reopened next time
            raise
        _tables[spec.uri] = target
        compacted = delta.compact_after_commit(target, spec.name, compact_min_files)
    return Committed(
        written=table.num_rows,
        quarantined=sum(len(entries) for entries in dead.values()),
        deduplicated=len(records) - len(unique),
        compacted=compacted,
    )
