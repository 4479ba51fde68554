"""A SQL worker process: runs governed statements in DuckDB under an address-space limit.

Started by :mod:`bastion.query.workers` as ``python -I -c <boot> <root> <conn fd> <control
fd> <parent pid>``. It imports only DuckDB, pyarrow and the small ``protocol`` and
``sandbox`` modules, then:

1. dies with the server: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (Linux), and a thread that
   blocks on the *control pipe*, whose write end only the server holds: when the server
   dies, however it dies, the kernel closes that end, the read returns nothing and the
   worker exits;
2. caps glibc's malloc arenas (each reserves 64 MiB of address space per thread) and
   Arrow's thread pools (the server starts it with mimalloc's arenas at 64 MiB), opens
   its locked DuckDB, measures its address space, and sets
   ``RLIMIT_AS`` so that no value a statement builds — ``repeat('x', 2e9)``, concatenations
   through nested CTEs, a huge result batch — can take more than the limit: the allocation
   fails, DuckDB raises ``OutOfMemoryException``, and the worker reports it and lives on;
3. runs jobs one at a time, streaming result batches back as Arrow IPC frames. The socket's
   buffer is the back-pressure: when the server stops reading, the worker blocks.

The control pipe also carries interrupts: 8 bytes naming a job id. The control thread then
interrupts DuckDB (repeatedly, as an interrupt between two DuckDB calls is lost) until that
job ends, and the main loop stops between batches.
"""

from __future__ import annotations

import ctypes
import os
import re
import resource
import select
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection

import duckdb
import pyarrow as pa

from bastion.query.protocol import (
    ACK,
    BATCH,
    END,
    ERROR,
    INTERNAL,
    INTERRUPT,
    INTERRUPTED,
    INVALID,
    MAX_FRAME_BYTES,
    OOM,
    READY,
    SCHEMA,
    TOO_LARGE,
    UNAVAILABLE,
    DeltaSnapshot,
    Job,
    WorkerConfig,
    control,
    frame,
    schema_bytes,
)
from bastion.query.sandbox import Sandbox

_PR_SET_PDEATHSIG = 1
_M_ARENA_MAX = -8
_MIB = 1024 * 1024


class _Stop(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class _State:
    """The job being run and its DuckDB connection, shared with the control thread.

    Job ids grow with each job a worker gets. An interrupt for a job that has not begun yet
    (it crossed the job on the way) is kept until that job begins; one for a job that has
    ended is dropped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.job_id: int | None = None
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._interrupted = False
        self._pending = 0  # the highest job id interrupted before it began
        self._ended = 0  # the last job id that ended

    def begin(self, job_id: int) -> None:
        with self._lock:
            self.job_id, self._conn = job_id, None
            self._interrupted = job_id <= self._pending

    def attach(self, conn: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            self._conn = conn
        self.check()

    def end(self) -> None:
        with self._lock:
            self._ended = self.job_id or self._ended
            self.job_id, self._conn = None, None

    def interrupt(self, job_id: int) -> bool:
        """Interrupt ``job_id``; ``False`` once it is over (no need to try again)."""
        with self._lock:
            if job_id <= self._ended:
                return False
            if self.job_id == job_id:
                self._interrupted = True
                if self._conn is not None:
                    self._conn.interrupt()
            else:
                self._pending = max(self._pending, job_id)
            return True

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    def check(self) -> None:
        if self._interrupted:
            raise _Stop(INTERRUPTED, "The statement was interrupted.")


def vm_size() -> int:
    """This process's address space in bytes (``VmSize``), 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _linux_setup(parent_pid: int) -> None:
    """SIGKILL when the server's spawning thread dies; at most two malloc arenas."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        libc.mallopt(_M_ARENA_MAX, 2)
    if os.getppid() != parent_pid:  # the server died before prctl took effect
        os._exit(1)


def _watch_control(fd: int, state: _State) -> None:
    """Interrupt the jobs the server names; exit when the server's end closes."""
    target: int | None = None
    while True:
        ready, _, _ = select.select([fd], [], [], 0.05 if target is not None else None)
        if ready:
            data = os.read(fd, 4096)
            if not data:
                os._exit(0)
            whole = len(data) - len(data) % INTERRUPT.size
            if whole:
                (target,) = INTERRUPT.unpack(data[whole - INTERRUPT.size : whole])
        if target is not None and not state.interrupt(target):
            target = None


def _pieces(batch: pa.RecordBatch) -> Iterator[tuple[pa.RecordBatch, pa.Buffer]]:
    """``batch`` serialized, split by rows into frames of at most ``MAX_FRAME_BYTES``."""
    data = batch.serialize()
    if data.size <= MAX_FRAME_BYTES:
        yield batch, data
        return
    if batch.num_rows <= 1:
        raise _Stop(
            TOO_LARGE,
            f"A single result row is larger than {MAX_FRAME_BYTES // _MIB} MiB; "
            "select fewer or shorter columns.",
        )
    del data
    half = batch.num_rows // 2
    yield from _pieces(batch.slice(0, half))
    yield from _pieces(batch.slice(half))


def _prefix(batch: pa.RecordBatch, budget: int) -> tuple[pa.RecordBatch, pa.Buffer | None]:
    """The longest leading slice of ``batch`` whose frame fits in ``budget`` bytes."""
    low, high = 0, batch.num_rows  # invariant: slice(0, low) fits, slice(0, high + 1) not
    while low < high:
        middle = (low + high + 1) // 2
        if pa.ipc.get_record_batch_size(batch.slice(0, middle)) <= budget:
            low = middle
        else:
            high = middle - 1
    if low == 0:
        return batch.slice(0, 0), None
    piece = batch.slice(0, low)
    return piece, piece.serialize()


def _stream(conn: Connection, reader: pa.RecordBatchReader, job: Job, state: _State) -> None:
    conn.send_bytes(frame(SCHEMA, schema_bytes(reader.schema)))
    rows = sent = 0
    truncated = exceeded = False
    for batch in reader:
        state.check()
        if job.max_rows is not None and rows + batch.num_rows > job.max_rows:
            batch = batch.slice(0, job.max_rows - rows)
            truncated = True
        if not batch.num_rows:  # (an empty slice may still serialize its whole buffers)
            if truncated:
                break
            continue
        for piece, data in _pieces(batch):
            size: int = data.size
            if job.max_bytes is not None and sent + size > job.max_bytes:
                exceeded = True
                del data
                piece, fitted = _prefix(piece, job.max_bytes - sent)
                if fitted is None:
                    break
                data, size = fitted, fitted.size
            if piece.num_rows:
                conn.send_bytes(frame(BATCH, data))
                rows += piece.num_rows
                sent += size
            if exceeded:
                break
        if truncated or exceeded:
            break
    conn.send_bytes(
        control(END, rows=rows, bytes=sent, truncated=truncated, exceeded=exceeded, vm=vm_size())
    )


def _run(conn: Connection, sandbox: Sandbox, state: _State, job: Job) -> None:
    state.begin(job.job_id)
    try:
        with sandbox.connect(job.sources, job.native_scan_bytes) as db:
            state.attach(db)
            relation = db.sql(job.sql, params=job.parameters) if job.parameters else db.sql(job.sql)
            state.check()
            if relation is None:
                raise _Stop(INVALID, "The statement returned no result.")
            _stream(conn, relation.to_arrow_reader(job.batch_rows), job, state)
    except _Stop as stop:
        _error(conn, stop.kind, stop.message)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        raise  # the server is gone
    except duckdb.InterruptException:
        _error(conn, INTERRUPTED, "The statement was interrupted.")
    except (duckdb.OutOfMemoryException, MemoryError, pa.ArrowMemoryError) as error:
        _error(conn, OOM, str(error) or type(error).__name__)
    except Exception as error:
        if _store_failed(job, error):
            _error(conn, UNAVAILABLE, " ".join(_ANSI.sub("", str(error)).split())[:500])
        elif isinstance(error, duckdb.Error):
            _error(conn, INVALID, str(error))
        elif isinstance(error, (OSError, pa.ArrowException, ValueError, TypeError)):
            # DuckDB's errors while the Arrow stream is read surface as these, with its message.
            _error(conn, INTERRUPTED if state.interrupted else _kind_of(str(error)), str(error))
        else:  # a bug: reported, the worker carries on
            _error(conn, INTERNAL, f"{type(error).__name__}: {error}")
    finally:
        state.end()


# An object store's client error as delta-rs words it ("Generic S3 error ... Error performing
# GET http://endpoint/bucket/key ... error sending request"), however DuckDB or Arrow wrap it.
_STORE_ERROR = re.compile(r"Generic \w+ error|Error performing [A-Z]+ |error sending request")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _store_failed(job: Job, error: Exception) -> bool:
    """Whether reading a table on an object store failed (the store is down, say)."""
    remote = any(isinstance(s, DeltaSnapshot) and "://" in s.location for s in job.sources.values())
    return remote and _STORE_ERROR.search(str(error)) is not None


def _kind_of(message: str) -> str:
    if "Out of Memory Error" in message or "bad allocation" in message:
        return OOM
    if "INTERRUPT Error" in message:
        return INTERRUPTED
    return INVALID


def _error(conn: Connection, kind: str, message: str) -> None:
    conn.send_bytes(control(ERROR, kind=kind, message=message, vm=vm_size()))


def serve(conn: Connection, control_fd: int, config: WorkerConfig) -> None:
    """Set up the limits and the sandbox, then run jobs until the server goes away."""
    pa.set_cpu_count(config.threads)
    pa.set_io_thread_count(config.threads)
    sandbox = Sandbox(f"{config.memory_limit_mb}MiB", config.threads, config.storage_options)
    sandbox.cursor().execute("SELECT 1").fetchall()  # open the database before measuring
    baseline = vm_size()
    limit = config.address_space_mb * _MIB
    if baseline and baseline + config.memory_limit_mb * _MIB > limit:
        _error(
            conn,
            INTERNAL,
            f"The SQL worker starts at {baseline // _MIB} MiB of address space; an "
            f"address-space limit of {config.address_space_mb} MiB leaves less than its "
            f"{config.memory_limit_mb} MiB memory limit. Raise BASTION_SQL_WORKER_ADDRESS_"
            "SPACE_MB or lower BASTION_SQL_WORKER_MEMORY_LIMIT_MB.",
        )
        return
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    state = _State()
    threading.Thread(
        target=_watch_control, args=(control_fd, state), name="sql-worker-control", daemon=True
    ).start()
    conn.send_bytes(control(READY, vm=baseline, pid=os.getpid()))
    while True:
        try:
            job: Job = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send_bytes(control(ACK, job=job.job_id))
            _run(conn, sandbox, state, job)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            return


def main(argv: list[str]) -> None:
    conn_fd, control_fd, parent_pid = (int(a) for a in argv[:3])
    _linux_setup(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the server's to handle
    conn = Connection(conn_fd)
    try:
        config: WorkerConfig = conn.recv()
        serve(conn, control_fd, config)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)
