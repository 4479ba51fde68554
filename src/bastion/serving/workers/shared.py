"""Model workers shared by the server processes of one host: the leader runs them, the
others route to them.

``bastion up --workers N`` runs N server processes on one ``BASTION_HOME``. A model worker
(llama.cpp, MLflow pyfunc) is a process of its own on loopback, and one per model version is
enough for all N: so only the leader (:mod:`bastion.metastore.lease`) starts and supervises
workers, and writes what it runs — key, port, state — to ``BASTION_HOME/run/workers.json``
on every change. The other processes read that file (a check of its modification time every
``poll_s``) and build their routes from it, exactly as if the workers were theirs.

When the leader dies its workers die with it (their guards see its lifeline close); the next
leader reaps what is left, starts the workers again, and rewrites the file. Until they are
ready, requests to their endpoints get 503 "starting". A replica on another host with a
``BASTION_HOME`` of its own sees no workers: serve models there from an OpenAI-compatible
server (vLLM, …) registered as an external model (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from bastion.serving.workers.supervisor import Worker, WorkerSpec, WorkerState, WorkerSupervisor

logger = logging.getLogger(__name__)

DIRECTORY_FILE = "workers.json"
_WAITING = "waiting for the leader process to start this worker"


class SharedWorkerSupervisor(WorkerSupervisor):
    """A :class:`WorkerSupervisor` that is either the host's (leader mode: it runs workers and
    publishes them) or a mirror of the leader's (follower mode: it starts nothing).

    It starts in leader mode, so a process that is alone behaves exactly as before; the
    leader election switches it with :meth:`lead` and :meth:`follow`.
    """

    def __init__(
        self, log_dir: Path, *, run_dir: Path, poll_s: float = 0.25, **options: Any
    ) -> None:
        self._leading = True
        self._directory_path = run_dir / DIRECTORY_FILE
        self._mirror: dict[str, Worker] = {}
        self._mirror_stamp: tuple[int, int] | None = None
        self._poll_s = poll_s
        self._mirror_stop = threading.Event()
        self._mirror_thread: threading.Thread | None = None
        super().__init__(log_dir, run_dir=run_dir, **options)

    @property
    def leading(self) -> bool:
        return self._leading

    # -- switching ------------------------------------------------------------------------

    def lead(self) -> None:
        """Become the host's supervisor: reap what a dead leader left, then start workers as
        routes ask for them (the routers rebuild at once)."""
        with self._lock:
            if self._leading:
                return
            self._leading = True
            self._mirror = {}
            if self.registry is not None:
                for orphan in self.registry.reap_orphans():
                    logger.warning("stopped orphaned worker %s (pid %d)", orphan.key, orphan.pid)
            self._changed()

    def follow(self) -> None:
        """Stop running workers (another process leads now) and mirror the leader's."""
        with self._lock:
            if not self._leading:
                return
            for worker in list(self._workers.values()):
                self._terminate(worker)
            self._workers.clear()
            if self._published_by_us():  # no one may route to the stopped workers
                self._publish()
            self._leading = False
            self._mirror_stamp = None
            self._refresh_mirror()
            self._changed()

    # -- what the router and status read ----------------------------------------------------

    def get(self, key: str) -> Worker | None:
        if self._leading:
            return super().get(key)
        return self._mirror.get(key)

    def workers(self) -> list[Worker]:
        if self._leading:
            return super().workers()
        return list(self._mirror.values())

    def ensure(self, spec: WorkerSpec) -> Worker:
        if self._leading:
            return super().ensure(spec)
        found = self._mirror.get(spec.key)
        if found is not None and found.spec.command == spec.command:
            return found
        return Worker(
            spec=spec,
            port=0,
            log_path=Path(os.devnull),
            state=WorkerState.STARTING,
            last_error=_WAITING,
        )

    def retain(self, keys: Any) -> None:
        if self._leading:
            super().retain(keys)

    def notify_failure(self, key: str) -> None:
        if self._leading:
            super().notify_failure(key)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        super().start()
        if self._mirror_thread is None:
            self._mirror_stop.clear()
            self._mirror_thread = threading.Thread(
                target=self._mirror_loop, name="bastion-workers-mirror", daemon=True
            )
            self._mirror_thread.start()

    def stop_all(self) -> None:
        self._mirror_stop.set()
        if self._mirror_thread is not None:
            self._mirror_thread.join(timeout=5)
            self._mirror_thread = None
        super().stop_all()

    # -- the directory ----------------------------------------------------------------------

    def _changed(self) -> None:
        if getattr(self, "_leading", False) and hasattr(self, "_directory_path"):
            self._publish()
        super()._changed()

    def _publish(self) -> None:
        entries = {
            key: {
                "port": worker.port,
                "state": worker.state.value,
                "last_error": worker.last_error,
                "command": list(worker.spec.command),
                "upstream_model": worker.spec.upstream_model,
                "api_prefix": worker.spec.api_prefix,
                "pid": worker.pid,
                "restarts": worker.restarts,
            }
            for key, worker in list(self._workers.items())
        }
        body = json.dumps({"leader_pid": os.getpid(), "workers": entries}).encode()
        try:
            self._directory_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            partial = self._directory_path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(body)
            partial.replace(self._directory_path)
        except OSError:
            logger.warning("could not publish the worker directory", exc_info=True)

    def _published_by_us(self) -> bool:
        try:
            data = json.loads(self._directory_path.read_bytes())
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("leader_pid") == os.getpid()

    def _mirror_loop(self) -> None:
        while not self._mirror_stop.wait(self._poll_s):
            if not self._leading:
                try:
                    self._refresh_mirror()
                except Exception:  # a half-written or unreadable file: next round
                    logger.debug("reading the worker directory failed", exc_info=True)

    def _refresh_mirror(self) -> None:
        try:
            stat = self._directory_path.stat()
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._mirror_stamp and stamp is not None:
            return
        mirror: dict[str, Worker] = {}
        if stamp is not None:
            with contextlib.suppress(ValueError):
                data = json.loads(self._directory_path.read_bytes())
                for key, entry in (data.get("workers") or {}).items():
                    spec = WorkerSpec(
                        key=key,
                        command=tuple(entry["command"]),
                        upstream_model=str(entry.get("upstream_model") or ""),
                        api_prefix=str(entry.get("api_prefix") or "/v1"),
                    )
                    mirror[key] = _mirrored(spec, entry)
        self._mirror_stamp = stamp
        self._mirror = mirror
        self.generation += 1  # routers rebuild from the leader's view


def _mirrored(spec: WorkerSpec, entry: dict[str, Any]) -> Worker:
    try:
        state = WorkerState(str(entry.get("state")))
    except ValueError:
        state = WorkerState.STARTING
    return Worker(
        spec=spec,
        port=int(entry.get("port") or 0),
        log_path=Path(os.devnull),
        state=state,
        restarts=int(entry.get("restarts") or 0),
        last_error=entry.get("last_error"),
    )
