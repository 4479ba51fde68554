"""The serving control plane of one process: endpoint store, worker supervisor and router."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from bastion.registry import registry_of
from bastion.secrets import secrets_of
from bastion.secrets.usage import require_secret_use
from bastion.serving.control.agent_traces import AgentTraceEnv
from bastion.serving.control.routing import EndpointRouter
from bastion.serving.control.store import EndpointStore
from bastion.serving.workers import WorkerSupervisor
from bastion.serving.workers.shared import SharedWorkerSupervisor

if TYPE_CHECKING:
    from bastion.platform import Platform

logger = logging.getLogger(__name__)


class ServingControl:
    """Owns the workers of this process. ``start()`` in the app lifespan, ``stop()`` after.

    While started, a reconcile thread keeps the router's snapshot fresh, so that a new or
    changed endpoint gets its workers started without waiting for a first request.
    """

    def __init__(
        self,
        platform: Platform,
        *,
        supervisor: WorkerSupervisor | None = None,
        reconcile_interval_s: float = 1.0,
    ) -> None:
        self.endpoints = EndpointStore(platform.metastore, platform.governance, platform.clock)
        # One host's processes share the leader's workers (serving/workers/shared.py).
        self.supervisor = supervisor or SharedWorkerSupervisor(
            platform.settings.home / "logs" / "workers", run_dir=platform.settings.home / "run"
        )
        self.router = EndpointRouter(
            platform.metastore,
            self.endpoints,
            registry_of(platform),
            secrets_of(platform),
            self.supervisor,
            worker_env=AgentTraceEnv(platform),
            secret_guard=lambda who, reference: require_secret_use(platform, who, reference),
            trusted=lambda who: _is_admin(platform, who),
        )
        self.base_url = platform.settings.base_url
        self._interval = reconcile_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def query_url(self, endpoint_name: str) -> str:
        return f"{self.base_url}/serving-endpoints/{endpoint_name}/invocations"

    def start(self) -> None:
        self.supervisor.start()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._reconcile_loop, name="bastion-serving-reconcile", daemon=True
            )
            self._thread.start()

    def _reconcile_loop(self) -> None:
        while True:
            try:
                self.router.snapshot()
            except Exception:  # a metastore hiccup; the next pass retries
                logger.warning("serving reconcile failed", exc_info=True)
            if self._stop.wait(self._interval):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.supervisor.stop_all()


def _is_admin(platform: Platform, principal: int | str) -> bool:
    caller = platform.identity_cache.active_caller(principal)
    return caller is not None and caller.is_admin


def serving_of(platform: Platform) -> ServingControl:
    """The platform's serving control (``platform.serving``), created on first use if not wired."""
    serving = getattr(platform, "serving", None)
    if isinstance(serving, ServingControl):
        return serving
    serving = ServingControl(platform)
    platform.serving = serving  # type: ignore[attr-defined]
    return serving
