"""The SQL worker pool: governed statements execute in separate processes, not the server.

Each worker (:mod:`bastion.query.sqlworker`) is a long-lived process with an address-space
limit (``RLIMIT_AS``) and its own locked DuckDB, so a statement that builds an enormous value
fails *there* with ``ResourceExhausted`` while the server's memory stays flat. The pool:

- starts workers on first use and keeps them (``workers`` of them at most); a worker that
  dies (OOM-killed, segfault, SIGKILL) or whose address space grew too much to fit another
  full statement is replaced in the background;
- gives workers out through a :class:`~bastion.query.scheduler.FairScheduler`, so each
  principal runs at most ``per_principal`` statements at once and waits its fair turn;
- streams result batches back with back-pressure (:class:`ResultStream`), watching the
  deadline and the cancel event: past either it interrupts the worker, and a worker that
  does not answer within ``grace_s`` is killed and replaced.

Workers are spawned by one long-lived thread of the pool. That matters on Linux: a worker's
``PR_SET_PDEATHSIG`` fires when the *thread* that forked it exits, and request threads come
and go; the spawner thread lives as long as the pool (and the server).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import pyarrow as pa

from bastion.errors import (
    BastionError,
    DeadlineExceeded,
    InvalidRequest,
    ResourceExhausted,
    StatementCanceled,
    Unavailable,
)
from bastion.query import protocol
from bastion.query.protocol import Job, WorkerConfig
from bastion.query.scheduler import FairScheduler
from bastion.query.sqlworker import INTERRUPT

if TYPE_CHECKING:
    from bastion.settings import Settings

_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from bastion.query.sqlworker import main; main(sys.argv[2:])"
)
# Arrow's C++ code allocates from mimalloc, which by default reserves address space in 1 GiB
# arenas (the worker's address space grows from ~0.55 to ~1.55 GiB at its first dataset scan):
# 64 MiB arenas keep it close to what is used, so that RLIMIT_AS bounds data, not reserves.
# (The system allocator would too, but scans Parquet ~1.5 ms slower per small statement.)
_ARROW_ALLOCATOR = {"MIMALLOC_ARENA_RESERVE": "64MiB"}
_POLL_S = 0.05
_MIB = 1024 * 1024
_CONTROL_FRAME_BYTES = 1024 * 1024


@dataclass(frozen=True)
class PoolConfig:
    workers: int = 3
    threads: int = 2
    memory_limit_mb: int = 768
    address_space_mb: int = 2304
    per_principal: int = 2
    grace_s: float = 5.0
    start_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolConfig:
        return cls(
            workers=settings.sql_workers,
            threads=settings.sql_worker_threads,
            memory_limit_mb=settings.sql_worker_memory_limit_mb,
            address_space_mb=settings.sql_worker_address_space_mb,
            per_principal=settings.sql_max_running_per_principal,
            grace_s=settings.sql_worker_grace_s,
        )

    @property
    def recycle_vm_bytes(self) -> int:
        """A worker whose address space exceeds this cannot fit another full statement."""
        return (self.address_space_mb - self.memory_limit_mb) * _MIB


class QueryFailed(InvalidRequest):
    """DuckDB refused the statement; ``message`` is DuckDB's, with internal names."""


class _Gone(Exception):
    """The worker stopped answering (died, or ignored an interrupt and was killed)."""


class _Worker:
    def __init__(self, process: subprocess.Popen[bytes], conn: Connection, control: int) -> None:
        self.process = process
        self.conn = conn
        self._control = control
        self._control_lock = threading.Lock()
        self.baseline_vm = 0
        self.vm = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def idle_and_alive(self) -> bool:
        """Alive, and nothing (such as the end of file of a dead worker) waits to be read."""
        try:
            return self.alive() and not self.conn.poll(0)
        except (OSError, EOFError):
            return False

    def interrupt(self, job_id: int) -> None:
        with self._control_lock, suppress(OSError):
            if self._control >= 0:
                os.write(self._control, INTERRUPT.pack(job_id))

    def kill(self) -> None:
        with suppress(OSError):
            self.process.kill()
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        self.conn.close()
        with self._control_lock, suppress(OSError):
            if self._control >= 0:
                os.close(self._control)
            self._control = -1

    def exit_description(self) -> str:
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)
        code = self.process.returncode
        if code is None:
            return "it stopped answering"
        if code < 0:
            with suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
            return f"killed by signal {-code}"
        return f"exit status {code}"


def _decode(data: bytes) -> tuple[bytes, memoryview]:
    view = memoryview(data)
    return bytes(view[:1]), view[1:]


def _json(payload: memoryview) -> dict[str, Any]:
    try:
        value = json.loads(bytes(payload))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _spawn(config: PoolConfig) -> _Worker:
    """Start one worker and wait until it is ready (runs on the pool's spawner thread)."""
    parent, child = multiprocessing.Pipe(duplex=True)
    control_r, control_w = os.pipe()
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-c",
                _BOOT,
                _ROOT,
                str(child.fileno()),
                str(control_r),
                str(os.getpid()),
            ],
            pass_fds=(child.fileno(), control_r),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env={**os.environ, **_ARROW_ALLOCATOR},
        )
    except BaseException:
        parent.close()
        os.close(control_w)
        raise
    finally:
        child.close()
        os.close(control_r)
    worker = _Worker(process, parent, control_w)
    try:
        parent.send(
            WorkerConfig(
                memory_limit_mb=config.memory_limit_mb,
                threads=config.threads,
                address_space_mb=config.address_space_mb,
            )
        )
        if not parent.poll(config.start_timeout_s):
            raise Unavailable("A SQL worker did not start in time; try again shortly.")
        kind, payload = _decode(parent.recv_bytes(_CONTROL_FRAME_BYTES))
        body = _json(payload)
        if kind != protocol.READY:
            raise Unavailable(f"A SQL worker could not start: {body.get('message', kind)}")
        worker.baseline_vm = worker.vm = int(body.get("vm", 0))
        return worker
    except (EOFError, OSError):
        worker.kill()
        raise Unavailable(
            f"A SQL worker could not start ({worker.exit_description()}); see the server log."
        ) from None
    except BaseException:
        worker.kill()
        raise


class ResultStream:
    """One job's result as the worker sends it: ``schema``, then record batches.

    Iterate it once. Afterwards ``rows`` is the number of rows received, ``truncated`` says
    whether ``max_rows`` cut rows off and ``exceeded`` whether ``max_bytes`` did.
    """

    def __init__(
        self,
        worker: _Worker,
        job: Job,
        *,
        deadline: float,
        timeout_s: float,
        cancel: threading.Event | None,
        config: PoolConfig,
    ) -> None:
        self._worker = worker
        self._job = job
        self._deadline = deadline
        self._timeout_s = timeout_s
        self._cancel = cancel
        self._config = config
        self._reason: str | None = None  # why the worker was interrupted
        self._grace_until = 0.0
        self._finished = False  # END or ERROR received: the worker is idle again
        self._recycle = False
        self.schema = pa.schema([])
        self.rows = 0
        self.bytes = 0
        self.truncated = False
        self.exceeded = False
        limit = job.max_bytes if job.max_bytes is not None else protocol.MAX_FRAME_BYTES
        self._max_frame = min(limit, protocol.MAX_FRAME_BYTES) + _CONTROL_FRAME_BYTES

    # -- protocol ---------------------------------------------------------------------------

    def _stop(self, reason: str) -> None:
        self._reason = reason
        self._grace_until = time.monotonic() + self._config.grace_s
        self._worker.interrupt(self._job.job_id)

    def _read(self) -> tuple[bytes, memoryview]:
        """The next frame, interrupting the worker at the deadline or on cancel."""
        while True:
            now = time.monotonic()
            if self._reason is None:
                if self._cancel is not None and self._cancel.is_set():
                    self._stop("cancel")
                elif now >= self._deadline:
                    self._stop("timeout")
            if self._reason is not None:
                wait = self._grace_until - now
                if wait <= 0:
                    self._worker.kill()
                    raise _Gone(
                        f"the SQL worker did not stop within {self._config.grace_s:g} s and "
                        "was replaced"
                    )
            else:
                wait = self._deadline - now
                if self._cancel is not None:
                    wait = min(wait, _POLL_S)
            try:
                if self._worker.conn.poll(max(wait, 0.0)):
                    return _decode(self._worker.conn.recv_bytes(self._max_frame))
            except (EOFError, OSError):
                self._worker.kill()
                raise _Gone(self._worker.exit_description()) from None

    def _frame(self) -> tuple[bytes, memoryview]:
        try:
            return self._read()
        except _Gone as gone:
            self._finished = True
            raise self._stopped_error(str(gone)) from None

    def _unexpected(self) -> BastionError:
        self._finished = True
        self._worker.kill()
        return BastionError("A SQL worker sent an unexpected reply; it was replaced.")

    def _last(self, kind: bytes, payload: memoryview) -> None:
        """The job's last frame: END returns, ERROR raises the statement's error."""
        if kind not in (protocol.END, protocol.ERROR):
            raise self._unexpected()
        self._finished = True
        body = _json(payload)
        self._worker.vm = int(body.get("vm", 0))
        if kind == protocol.ERROR:
            raise self._error(str(body.get("kind")), str(body.get("message", "")))
        self.truncated = bool(body.get("truncated"))
        self.exceeded = bool(body.get("exceeded"))

    def _next(self) -> pa.RecordBatch | None:
        """The next batch; ``None`` at the end. Raises the statement's error."""
        kind, payload = self._frame()
        if kind != protocol.BATCH:
            self._last(kind, payload)
            return None
        try:
            batch = pa.ipc.read_record_batch(pa.py_buffer(payload), self.schema)
        except (pa.ArrowException, ValueError):
            raise self._unexpected() from None
        self.rows += batch.num_rows
        self.bytes += len(payload)
        return batch

    def _error(self, kind: str, message: str) -> BastionError:
        if kind == protocol.INTERRUPTED or self._reason in ("timeout", "cancel"):
            return self._stopped_error("")
        if kind == protocol.OOM:
            self._recycle = True
            return ResourceExhausted(
                "The statement needed more memory than a SQL worker allows "
                f"({self._config.memory_limit_mb} MiB for its operators, "
                f"{self._config.address_space_mb} MiB of address space in all) and was "
                "stopped; aggregate or filter more, or select fewer or shorter values."
            )
        if kind == protocol.TOO_LARGE:
            return ResourceExhausted(message)
        if kind == protocol.INVALID:
            return QueryFailed(message)
        return BastionError(f"The SQL worker failed: {message}")

    def _stopped_error(self, lost: str) -> BastionError:
        suffix = f" ({lost})" if lost else ""
        if self._reason == "cancel":
            return StatementCanceled("The statement was cancelled." + suffix)
        if self._reason == "timeout":
            return DeadlineExceeded(
                f"The statement ran longer than its {self._timeout_s:g} s timeout and was "
                f"cancelled; narrow the query or raise the timeout.{suffix}"
            )
        if lost:
            return ResourceExhausted(
                f"The SQL worker running this statement stopped unexpectedly ({lost}), most "
                "likely because the statement needed more memory than the machine could give; "
                "it has been replaced. Narrow the query and try again."
            )
        return BastionError("The SQL worker stopped the statement unexpectedly.")

    # -- public -----------------------------------------------------------------------------

    def open(self) -> None:
        """Wait for the result's schema (or the statement's error)."""
        kind, payload = self._frame()
        if kind != protocol.SCHEMA:
            self._last(kind, payload)
            return
        try:
            self.schema = protocol.read_schema(payload)
        except (pa.ArrowException, ValueError):
            raise self._unexpected() from None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while not self._finished:
            batch = self._next()
            if batch is None:
                return
            yield batch

    def close(self) -> bool:
        """Finish the job (interrupting it if unread); whether the worker may run another."""
        if not self._finished and self._worker.alive():
            if self._reason is None:
                self._stop("abandon")
            try:
                while True:
                    kind, _ = self._read()
                    if kind in (protocol.END, protocol.ERROR):
                        break
            except _Gone:
                return False
        return (
            self._worker.alive()
            and not self._recycle
            and self._worker.vm <= self._config.recycle_vm_bytes
        )


_Slot: TypeAlias = "_Worker | Future[_Worker] | None"


class WorkerPool:
    """``workers`` SQL worker processes shared fairly between principals."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self._scheduler = FairScheduler(config.workers, config.per_principal)
        self._lock = threading.Lock()
        self._idle: list[_Slot] = [None] * config.workers
        self._busy: dict[int, _Worker] = {}  # pid -> worker running a job
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sql-spawner")
        self._closed = False
        self._ids = iter(range(1, sys.maxsize))

    @property
    def scheduler(self) -> FairScheduler:
        return self._scheduler

    @contextmanager
    def stream(
        self,
        job: Job,
        *,
        principal: int,
        deadline: float,
        timeout_s: float,
        cancel: threading.Event | None = None,
    ) -> Iterator[ResultStream]:
        """Run ``job`` for ``principal`` on a worker; yields its result stream.

        Waits for a fair turn until ``deadline`` (``DeadlineExceeded``) or ``cancel``
        (``StatementCanceled``). Leaving the block early interrupts the job.
        """
        if cancel is not None and cancel.is_set():
            raise StatementCanceled("The statement was cancelled before it started.")
        self._scheduler.acquire(principal, deadline, cancel)
        worker: _Worker | None = None
        reusable = False
        try:  # the permit holds one slot: it goes back exactly once, below
            job = replace(job, job_id=next(self._ids))
            worker = self._send(job)
            result = ResultStream(
                worker,
                job,
                deadline=deadline,
                timeout_s=timeout_s,
                cancel=cancel,
                config=self.config,
            )
            try:
                result.open()
                yield result
            finally:
                reusable = result.close()
        finally:
            self._checkin(worker, reusable=reusable)
            self._scheduler.release(principal)

    def _send(self, job: Job) -> _Worker:
        """A started worker that acknowledged ``job``.

        A worker that dies before acknowledging a job never started it (it was dead or dying
        when taken: killed while idle, say), so the job goes to a new worker, once.
        """
        worker = self._checkout()
        if not self._started(worker, job):
            worker = self._new_worker()
            if not self._started(worker, job):
                raise Unavailable("The SQL workers keep failing; see the server log.")
        with self._lock:
            self._busy[worker.pid] = worker
        return worker

    def _started(self, worker: _Worker, job: Job) -> bool:
        try:
            worker.conn.send(job)
            if worker.conn.poll(self.config.grace_s):
                kind, payload = _decode(worker.conn.recv_bytes(_CONTROL_FRAME_BYTES))
                if kind == protocol.ACK and _json(payload).get("job") == job.job_id:
                    return True
        except (OSError, EOFError):
            pass
        worker.kill()
        return False

    def _checkout(self) -> _Worker:
        """The worker of an idle slot, started now if it has none (the caller holds a permit)."""
        with self._lock:
            if self._closed:
                raise Unavailable("The SQL engine is shut down.")
            slot = self._take()
        if isinstance(slot, Future):
            try:
                slot = slot.result(timeout=self.config.start_timeout_s)
            except (BastionError, FutureTimeout, OSError):
                slot = None  # the replacement failed to start: try once more, below
        if isinstance(slot, _Worker):
            if slot.idle_and_alive():
                return slot
            slot.kill()
        return self._new_worker()

    def _new_worker(self) -> _Worker:
        try:
            return self._spawner.submit(self._start).result(timeout=self.config.start_timeout_s)
        except FutureTimeout:
            raise Unavailable("A SQL worker did not start in time; try again shortly.") from None
        except RuntimeError:  # the spawner is shut down
            raise Unavailable("The SQL engine is shut down.") from None

    def _take(self) -> _Slot:
        """An idle slot, preferring a started worker, then one starting (lock held)."""
        for kind in (_Worker, Future):
            for index in range(len(self._idle) - 1, -1, -1):
                if isinstance(self._idle[index], kind):
                    return self._idle.pop(index)
        return self._idle.pop()

    def _start(self) -> _Worker:
        worker = _spawn(self.config)
        if self._closed:
            worker.kill()
            raise Unavailable("The SQL engine is shut down.")
        return worker

    def _checkin(self, worker: _Worker | None, *, reusable: bool) -> None:
        """Return a slot: the worker if it may run more, else start a replacement."""
        with self._lock:
            if worker is not None:
                self._busy.pop(worker.pid, None)
            if self._closed:
                if worker is not None:
                    worker.kill()
                self._idle.append(None)
                return
            if worker is not None and reusable:
                self._idle.append(worker)
                return
            if worker is not None:
                worker.kill()
            # A worker that died or grew too large is replaced now, in the background.
            self._idle.insert(0, self._spawner.submit(self._start) if worker else None)

    # -- introspection and shutdown ---------------------------------------------------------

    def pids(self) -> list[int]:
        """Process ids of the started workers, idle or busy."""
        with self._lock:
            idle = [s.pid for s in self._idle if isinstance(s, _Worker)]
            done = [
                s.result().pid
                for s in self._idle
                if isinstance(s, Future) and s.done() and s.exception() is None
            ]
            return sorted([*idle, *done, *self._busy])

    def busy_pids(self) -> list[int]:
        """Process ids of the workers running a job now."""
        with self._lock:
            return sorted(self._busy)

    def close(self) -> None:
        """Stop every worker; statements still running fail."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            slots, self._idle = self._idle, [None] * len(self._idle)
            busy = list(self._busy.values())
        self._spawner.shutdown(wait=True, cancel_futures=True)
        for slot in slots:
            if isinstance(slot, Future):
                slot = slot.result() if slot.done() and slot.exception() is None else None
            if isinstance(slot, _Worker):
                slot.kill()
        for worker in busy:
            worker.kill()
