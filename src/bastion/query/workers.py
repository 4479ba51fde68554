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

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import replace
from typing import TypeAlias

from bastion.errors import BastionError, StatementCanceled, Unavailable
from bastion.query.processes import PoolConfig, WorkerProcess, spawn
from bastion.query.protocol import Job
from bastion.query.results import ResultStream
from bastion.query.scheduler import FairScheduler

__all__ = ["PoolConfig", "WorkerPool"]


_Slot: TypeAlias = "WorkerProcess | Future[WorkerProcess] | None"


class WorkerPool:
    """``workers`` SQL worker processes shared fairly between principals."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self._scheduler = FairScheduler(config.workers, config.per_principal)
        self._lock = threading.Lock()
        self._idle: list[_Slot] = [None] * config.workers
        self._busy: dict[int, WorkerProcess] = {}  # pid -> worker running a job
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
        worker: WorkerProcess | None = None
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

    def _send(self, job: Job) -> WorkerProcess:
        """A started worker that acknowledged ``job``.

        A worker that dies before acknowledging a job never started it (it was dead or dying
        when taken: killed while idle, say), so the job goes to a new worker, once.
        """
        worker = self._checkout()
        if not worker.start(job, self.config.grace_s):
            worker = self._new_worker()
            if not worker.start(job, self.config.grace_s):
                raise Unavailable("The SQL workers keep failing; see the server log.")
        with self._lock:
            self._busy[worker.pid] = worker
        return worker

    def _checkout(self) -> WorkerProcess:
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
        if isinstance(slot, WorkerProcess):
            if slot.idle_and_alive():
                return slot
            slot.kill()
        return self._new_worker()

    def _new_worker(self) -> WorkerProcess:
        try:
            return self._spawner.submit(self._start).result(timeout=self.config.start_timeout_s)
        except FutureTimeout:
            raise Unavailable("A SQL worker did not start in time; try again shortly.") from None
        except RuntimeError:  # the spawner is shut down
            raise Unavailable("The SQL engine is shut down.") from None

    def _take(self) -> _Slot:
        """An idle slot, preferring a started worker, then one starting (lock held)."""
        for kind in (WorkerProcess, Future):
            for index in range(len(self._idle) - 1, -1, -1):
                if isinstance(self._idle[index], kind):
                    return self._idle.pop(index)
        return self._idle.pop()

    def _start(self) -> WorkerProcess:
        worker = spawn(self.config)
        if self._closed:
            worker.kill()
            raise Unavailable("The SQL engine is shut down.")
        return worker

    def _checkin(self, worker: WorkerProcess | None, *, reusable: bool) -> None:
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
            idle = [s.pid for s in self._idle if isinstance(s, WorkerProcess)]
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
            if isinstance(slot, WorkerProcess):
                slot.kill()
        for worker in busy:
            worker.kill()
