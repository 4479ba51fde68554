"""Where MLflow pyfunc agents send their spans: back to this platform, in the request's trace.

A pyfunc worker gets the standard OpenTelemetry exporter settings in its environment, which
MLflow's tracing honours: OTLP/HTTP protobuf to ``/api/2.0/bastion/traces`` on this server,
authenticated as the service principal ``bastion-agents`` with a token scoped to ``traces``
only. The worker continues the gateway's ``traceparent``, so the agent's spans (MLflow's
``AGENT`` span around ``predict``, and whatever ``@mlflow.trace`` / ``mlflow.start_span``
the agent opens) land in ``system.tracing.spans`` under the CLIENT span of the call.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from urllib.parse import quote

from bastion.errors import AlreadyExists
from bastion.identity.model import PrincipalKind

if TYPE_CHECKING:
    from bastion.platform import Platform

AGENT_PRINCIPAL = "bastion-agents"
TOKEN_TTL_S = 30 * 86_400
RENEW_BEFORE_S = 86_400  # a worker's token is replaced (and the worker restarted) a day early
EXPORT_DELAY_MS = 500

Env = tuple[tuple[str, str], ...]


class AgentTraceEnv:
    """``env(worker_key)``: the exporter settings for one worker (stable while its token is)."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._lock = threading.Lock()
        self._issued: dict[str, tuple[Env, int]] = {}

    def _receiver(self) -> str:
        settings = self._platform.settings
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{host}:{settings.port}/api/2.0/bastion/traces"

    def _principal_id(self) -> int:
        identity = self._platform.identity
        record = identity.find(AGENT_PRINCIPAL)
        if record is None:
            try:
                record = identity.create_principal(
                    PrincipalKind.SERVICE_PRINCIPAL, AGENT_PRINCIPAL, "Bastion agents (traces)"
                )
            except AlreadyExists:  # another replica created it just now
                record = identity.find(AGENT_PRINCIPAL)
                assert record is not None
        return record.id

    def __call__(self, worker_key: str) -> Env:
        now = self._platform.clock.now()
        with self._lock:
            issued = self._issued.get(worker_key)
            if issued is not None and issued[1] - RENEW_BEFORE_S > now:
                return issued[0]
            token, expires_at = self._platform.codec.issue(
                self._principal_id(), ("traces",), TOKEN_TTL_S
            )
            env: Env = (
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", self._receiver()),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "authorization=" + quote(f"Bearer {token}")),
                ("OTEL_SERVICE_NAME", worker_key),
                ("OTEL_BSP_SCHEDULE_DELAY", str(EXPORT_DELAY_MS)),
            )
            self._issued[worker_key] = (env, expires_at)
            return env
