"""App processes: each app runs under a guard (it dies with the server), on a loopback port,
in its own working directory, restarted with back-off when it dies.

The supervisor knows nothing of deployments or credentials: ``prepare(name, port)`` builds
the command, environment and working directory for every (re)start — so each start gets a
fresh service-principal secret and re-checks the secrets its environment reads.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from bastion.errors import BastionError
from bastion.processes import Lifeline, ProcessRegistry, spawn

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
APP_KIND = "app"
MAX_LOG_BYTES = 32 * 1024 * 1024


class ProcessState(StrEnum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    CRASHED = "CRASHED"
    STOPPED = "STOPPED"


@dataclass(frozen=True)
class LaunchSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


@dataclass
class AppProcess:
    name: str
    port: int
    log_path: Path
    state: ProcessState = ProcessState.STOPPED
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    restarts: int = 0
    failures: int = 0  # consecutive deaths without a stable run
    last_error: str | None = None
    started_at: float = 0.0
    running_since: float | None = None
    next_start_at: float = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


Prepare = Callable[[str, int], LaunchSpec]


class AppSupervisor:
    def __init__(
        self,
        log_dir: Path,
        prepare: Prepare,
        *,
        run_dir: Path | None = None,
        check_interval_s: float = 0.5,
        startup_timeout_s: float = 300.0,
        max_backoff_s: float = 30.0,
        stable_after_s: float = 30.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.prepare = prepare
        self.check_interval_s = check_interval_s
        self.startup_timeout_s = startup_timeout_s
        self.max_backoff_s = max_backoff_s
        self.stable_after_s = stable_after_s
        self.on_change = on_change
        self._apps: dict[str, AppProcess] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lifeline = Lifeline()
        self.registry = ProcessRegistry(run_dir) if run_dir is not None else None
        if self.registry is not None:
            for orphan in self.registry.reap_orphans():
                logger.warning("stopped orphaned app %s (pid %d)", orphan.key, orphan.pid)
        atexit.register(_stop_at_exit, weakref.ref(self))

    # -- queries ------------------------------------------------------------------------------

    def get(self, name: str) -> AppProcess | None:
        return self._apps.get(name)

    def processes(self) -> list[AppProcess]:
        with self._lock:
            return list(self._apps.values())

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    # -- lifecycle ----------------------------------------------------------------------------

    def run(self, name: str, *, restart: bool = False) -> AppProcess:
        """Have ``name`` running; ``restart`` stops a running one first (a new deployment)."""
        with self._lock:
            app = self._apps.get(name)
            if app is None:
                app = AppProcess(name=name, port=free_port(), log_path=self.log_path(name))
                self._apps[name] = app
            elif not restart and app.state in (ProcessState.STARTING, ProcessState.RUNNING):
                return app
            self._terminate(app)
            app.failures = 0
            self._launch(app)
            return app

    def stop(self, name: str) -> None:
        with self._lock:
            app = self._apps.pop(name, None)
            if app is not None:
                self._terminate(app)
                self._changed()

    def stop_all(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            for app in list(self._apps.values()):
                self._terminate(app)
            self._apps.clear()
            self._lifeline.close()
            self._lifeline = Lifeline()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="bastion-apps", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:  # keep supervising whatever one pass did
                logger.exception("app supervision pass failed")
            self._wake.wait(self.check_interval_s)
            self._wake.clear()

    def check_once(self) -> None:
        now = time.monotonic()
        for app in self.processes():
            with self._lock:
                if self._apps.get(app.name) is app:
                    self._check(app, now)

    def _check(self, app: AppProcess, now: float) -> None:
        if app.state == ProcessState.STOPPED:
            return
        if app.state == ProcessState.CRASHED:
            if app.process is None and now >= app.next_start_at:
                self._launch(app)
            return
        assert app.process is not None
        code = app.process.poll()
        if code is not None:
            self._died(app, f"the app process exited with code {code}")
            return
        if app.state == ProcessState.STARTING:
            if _listening(app.port):
                app.state = ProcessState.RUNNING
                app.running_since = now
                app.last_error = None
                logger.info("app %s listening on port %d", app.name, app.port)
                self._changed()
            elif now - app.started_at > self.startup_timeout_s:
                self._kill(app.process)
                self._died(
                    app, f"the app did not listen on its port within {self.startup_timeout_s:.0f} s"
                )
        elif app.running_since is not None and now - app.running_since >= self.stable_after_s:
            app.failures = 0

    def _died(self, app: AppProcess, reason: str) -> None:
        if self.registry is not None and app.process is not None:
            self.registry.forget(APP_KIND, app.name, app.process.pid)
        app.process = None
        app.running_since = None
        app.failures += 1
        app.restarts += 1
        app.state = ProcessState.CRASHED
        app.last_error = f"{reason}; see its logs (bastion apps logs {app.name})"
        backoff = min(self.max_backoff_s, 0.5 * 2 ** (app.failures - 1))
        app.next_start_at = time.monotonic() + backoff
        if app.failures >= 2:
            app.port = free_port()  # in case something else took it meanwhile
        logger.warning("app %s died (%s); restarting in %.1f s", app.name, reason, backoff)
        self._changed()

    # -- processes ----------------------------------------------------------------------------

    def _launch(self, app: AppProcess) -> None:
        app.started_at = time.monotonic()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        _rotate(app.log_path)
        try:
            spec = self.prepare(app.name, app.port)
        except BastionError as error:
            self._write_log(app.log_path, f"--- cannot start: {error.message}\n")
            app.process = None
            app.failures += 1
            app.state = ProcessState.CRASHED
            app.last_error = error.message
            app.next_start_at = time.monotonic() + min(
                self.max_backoff_s, 0.5 * 2 ** (app.failures - 1)
            )
            self._changed()
            return
        with app.log_path.open("ab") as log:
            log.write(f"--- starting on port {app.port}: {' '.join(spec.argv)}\n".encode())
            log.flush()
            try:
                app.process = spawn(
                    spec.argv,
                    kind=APP_KIND,
                    key=app.name,
                    lifeline=self._lifeline,
                    registry=self.registry,
                    env=spec.env,
                    cwd=spec.cwd,
                    log=log,
                )
            except OSError as exc:
                app.process = None
                app.failures += 1
                app.state = ProcessState.CRASHED
                app.last_error = f"cannot start the app: {exc}"
                app.next_start_at = time.monotonic() + self.max_backoff_s
                self._changed()
                return
        app.state = ProcessState.STARTING
        threading.Thread(
            target=self._watch, args=(app.process,), name="bastion-app-watch", daemon=True
        ).start()
        self._changed()

    @staticmethod
    def _write_log(path: Path, text: str) -> None:
        with path.open("ab") as log:
            log.write(text.encode())

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        self._wake.set()

    def _terminate(self, app: AppProcess) -> None:
        process, app.process = app.process, None
        app.state = ProcessState.STOPPED
        app.running_since = None
        if process is not None:
            self._kill(process)
            if self.registry is not None:
                self.registry.forget(APP_KIND, app.name, process.pid)

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
        if self.on_change is not None:
            self.on_change()


def _rotate(path: Path) -> None:
    try:
        if path.stat().st_size > MAX_LOG_BYTES:
            path.replace(path.with_suffix(".log.1"))
    except OSError:
        pass


def _stop_at_exit(ref: weakref.ReferenceType[AppSupervisor]) -> None:
    supervisor = ref()
    if supervisor is not None:
        supervisor.stop_all()
