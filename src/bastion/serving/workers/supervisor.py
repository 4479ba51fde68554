"""Managed model workers: processes on loopback that speak OpenAI-compatible HTTP.

The supervisor starts a worker for a :class:`WorkerSpec` on a free port, health-checks it
until it answers, restarts it (same port, exponential back-off) when it dies, stops workers no
longer wanted after a grace period, and stops them all on shutdown.

>>> supervisor = WorkerSupervisor(Path("/tmp/logs"))
>>> worker = supervisor.ensure(llama_cpp_spec("main.default.smollm2/1", gguf, "smollm2-1"))
>>> supervisor.start()          # health checks and restarts, in a background thread
>>> worker.base_url             # 'http://127.0.0.1:<port>/v1'
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import httpx

from bastion.processes import Lifeline, ProcessRegistry, spawn

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
WORKER_KIND = "model-worker"


class WorkerState(StrEnum):
    STARTING = "STARTING"
    READY = "READY"
    RESTARTING = "RESTARTING"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


@dataclass(frozen=True)
class WorkerSpec:
    """What to run. ``{port}`` and ``{host}`` in ``command`` are replaced at start."""

    key: str
    command: tuple[str, ...]
    upstream_model: str
    health_path: str = "/v1/models"
    api_prefix: str = "/v1"
    env: tuple[tuple[str, str], ...] = ()
    startup_timeout_s: float = 180.0
    #: The context window Bastion gives the worker (llama.cpp's ``--n_ctx``), if it sets one:
    #: the gateway checks prompts against it before calling.
    context_tokens: int | None = None


@dataclass
class Worker:
    spec: WorkerSpec
    port: int
    log_path: Path
    state: WorkerState = WorkerState.STOPPED
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    restarts: int = 0
    failed_starts: int = 0
    last_error: str | None = None
    started_at: float = 0.0
    next_restart_at: float = 0.0
    unwanted_since: float | None = None

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{LOOPBACK}:{self.port}{self.spec.api_prefix}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class WorkerSupervisor:
    def __init__(
        self,
        log_dir: Path,
        *,
        check_interval_s: float = 0.5,
        max_failed_starts: int = 5,
        max_backoff_s: float = 30.0,
        stop_grace_s: float = 30.0,
        on_change: Callable[[], None] | None = None,
        run_dir: Path | None = None,
    ) -> None:
        """``run_dir`` (``BASTION_HOME/run``): where workers are recorded, so that a server
        starting after a crash stops what its predecessor left (before starting its own)."""
        self.log_dir = log_dir
        self.check_interval_s = check_interval_s
        self.max_failed_starts = max_failed_starts
        self.max_backoff_s = max_backoff_s
        self.stop_grace_s = stop_grace_s
        self.on_change = on_change
        # Grows on every state change, so that routers rebuild their plans.
        self.generation = 0
        self._workers: dict[str, Worker] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=2.0, trust_env=False)
        # Every worker runs under a guard that stops it when this process is gone.
        self._lifeline = Lifeline()
        self.registry = ProcessRegistry(run_dir) if run_dir is not None else None
        if self.registry is not None:
            for orphan in self.registry.reap_orphans():
                logger.warning("stopped orphaned worker %s (pid %d)", orphan.key, orphan.pid)
        atexit.register(_stop_at_exit, weakref.ref(self))

    # -- queries ------------------------------------------------------------------------------

    def get(self, key: str) -> Worker | None:
        return self._workers.get(key)

    def workers(self) -> list[Worker]:
        with self._lock:
            return list(self._workers.values())

    # -- lifecycle ----------------------------------------------------------------------------

    def ensure(self, spec: WorkerSpec) -> Worker:
        """Have a worker for ``spec`` running (started now if needed); returns at once."""
        with self._lock:
            worker = self._workers.get(spec.key)
            if worker is not None and worker.spec == spec and worker.state != WorkerState.STOPPED:
                worker.unwanted_since = None
                return worker
            if worker is not None:
                self._terminate(worker)
            worker = Worker(
                spec=spec,
                port=free_port(),
                log_path=self.log_dir / f"{_file_name(spec.key)}.log",
            )
            self._workers[spec.key] = worker
            self._launch(worker)
            return worker

    def retain(self, keys: Iterable[str]) -> None:
        """Mark workers outside ``keys`` unwanted; they stop after ``stop_grace_s``."""
        wanted = set(keys)
        now = time.monotonic()
        with self._lock:
            for key, worker in self._workers.items():
                if key in wanted:
                    worker.unwanted_since = None
                elif worker.unwanted_since is None:
                    worker.unwanted_since = now

    def restart(self, key: str) -> None:
        """Restart a worker now (also one that gave up after repeated failed starts)."""
        with self._lock:
            worker = self._workers[key]
            self._terminate(worker)
            worker.failed_starts = 0
            self._launch(worker)

    def stop(self, key: str) -> None:
        with self._lock:
            worker = self._workers.get(key)
            if worker is not None:
                self._terminate(worker)
                self._workers.pop(key, None)
                self._changed()

    def stop_all(self) -> None:
        """Stop the health-check thread and every worker (called on server shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            for worker in list(self._workers.values()):
                self._terminate(worker)
            self._workers.clear()
            self._lifeline.close()  # nothing of ours may run on; a later start gets a new one
            self._lifeline = Lifeline()
        self._changed()

    def notify_failure(self, key: str) -> None:
        """A caller saw the worker fail (connection refused...): check it now, not later."""
        if key in self._workers:
            self._wake.set()

    # -- the health loop ----------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`health_check_loop` in a daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.health_check_loop, name="bastion-workers", daemon=True
        )
        self._thread.start()

    def health_check_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:  # keep supervising whatever one check did
                logger.exception("worker health check failed")
            self._wake.wait(self.check_interval_s)
            self._wake.clear()

    def check_once(self) -> None:
        """One pass: notice deaths, restart when due, promote healthy starters, reap unwanted."""
        now = time.monotonic()
        for worker in self.workers():
            with self._lock:
                if self._workers.get(worker.spec.key) is not worker:
                    continue
                if (
                    worker.unwanted_since is not None
                    and now - worker.unwanted_since >= self.stop_grace_s
                ):
                    self._terminate(worker)  # before it leaves the registry: no gap to see
                    self._workers.pop(worker.spec.key)
                    self._changed()
                    continue
                self._check(worker, now)

    def _check(self, worker: Worker, now: float) -> None:
        process = worker.process
        if worker.state in (WorkerState.FAILED, WorkerState.STOPPED):
            return
        if worker.state == WorkerState.RESTARTING:
            if now >= worker.next_restart_at:
                self._launch(worker)
            return
        assert process is not None
        code = process.poll()
        if code is not None:
            self._died(worker, f"worker process exited with code {code}")
            return
        if worker.state == WorkerState.STARTING:
            if self._healthy(worker):
                worker.state = WorkerState.READY
                worker.failed_starts = 0
                worker.last_error = None
                logger.info("worker %s ready on port %d", worker.spec.key, worker.port)
                self._changed()
            elif now - worker.started_at > worker.spec.startup_timeout_s:
                self._kill(process)
                self._died(worker, f"worker did not answer within {worker.spec.startup_timeout_s}s")

    def _died(self, worker: Worker, reason: str) -> None:
        if self.registry is not None and worker.process is not None:
            self.registry.forget(WORKER_KIND, worker.spec.key, worker.process.pid)
        starting = worker.state == WorkerState.STARTING
        worker.last_error = f"{reason}; see {worker.log_path}"
        worker.process = None
        if starting:
            worker.failed_starts += 1
        if worker.failed_starts >= self.max_failed_starts:
            worker.state = WorkerState.FAILED
            logger.error("worker %s failed: %s", worker.spec.key, worker.last_error)
        else:
            backoff = min(self.max_backoff_s, 0.25 * (2**worker.failed_starts))
            worker.state = WorkerState.RESTARTING
            worker.next_restart_at = time.monotonic() + (backoff if starting else 0.0)
            worker.restarts += 1
            if worker.failed_starts >= 2:  # the port may have been taken meanwhile
                worker.port = free_port()
            logger.warning("worker %s died (%s); restarting", worker.spec.key, reason)
            if not starting:
                self._launch(worker)
        self._changed()

    def _healthy(self, worker: Worker) -> bool:
        try:
            response = self._http.get(f"http://{LOOPBACK}:{worker.port}{worker.spec.health_path}")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # -- processes ----------------------------------------------------------------------------

    def _launch(self, worker: Worker) -> None:
        spec = worker.spec
        argv = [part.format(port=worker.port, host=LOOPBACK) for part in spec.command]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **dict(spec.env), "PYTHONUNBUFFERED": "1"}
        with worker.log_path.open("ab") as log:
            log.write(f"--- starting on port {worker.port}: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                # Under its guard, in a process group of its own, stopped as a whole.
                worker.process = spawn(
                    argv,
                    kind=WORKER_KIND,
                    key=spec.key,
                    lifeline=self._lifeline,
                    registry=self.registry,
                    env=env,
                    log=log,
                )
            except OSError as exc:
                worker.process = None
                worker.state = WorkerState.FAILED
                worker.last_error = f"cannot start worker: {exc}"
                self._changed()
                return
        worker.state = WorkerState.STARTING
        worker.started_at = time.monotonic()
        threading.Thread(
            target=self._watch, args=(worker.process,), name="bastion-worker-watch", daemon=True
        ).start()
        self._changed()

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        self._wake.set()  # let the loop notice the death at once

    def _terminate(self, worker: Worker) -> None:
        process, worker.process = worker.process, None
        worker.state = WorkerState.STOPPED
        if process is not None:
            self._kill(process)
            if self.registry is not None:
                self.registry.forget(WORKER_KIND, worker.spec.key, process.pid)

    @staticmethod
    def _kill(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            process.wait(timeout=grace_s)

    def _changed(self) -> None:
        self.generation += 1
        if self.on_change is not None:
            self.on_change()


def _stop_at_exit(ref: weakref.ReferenceType[WorkerSupervisor]) -> None:
    supervisor = ref()
    if supervisor is not None:
        supervisor.stop_all()


def _file_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in key)
