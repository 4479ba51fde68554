"""The in-memory routing view the gateway reads on every request, with no SQL.

:class:`EndpointRouter` keeps one snapshot of every endpoint, resolved: model aliases to
versions, versions to workers (started through the supervisor) or external providers, secret
references to keys. The snapshot is rebuilt when the metastore's generation moves (any config,
alias, grant or secret change, here or on another replica) or a worker changes state, so moving
``@champion`` takes effect on the next request.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bastion.errors import BastionError, NotFound, Unavailable
from bastion.observability.payload_tables import payload_table_name
from bastion.registry import ArtifactKind, ExternalModel, ModelRegistry, parse_external_model
from bastion.secrets import SecretReference, SecretStore
from bastion.serving.control.store import EndpointRecord, EndpointStore
from bastion.serving.guardrails import Guardrails, parse_guardrails
from bastion.serving.limits import RateLimits, parse_rate_limits
from bastion.serving.workers import WorkerSpec, WorkerState, WorkerSupervisor
from bastion.serving.workers.specs import llama_cpp_spec, pyfunc_spec

if TYPE_CHECKING:
    from bastion.metastore.db import Metastore

logger = logging.getLogger(__name__)

UpstreamKind = Literal["worker", "openai", "anthropic"]
SecretGuard = Callable[[int | str, SecretReference], None]
DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Upstream:
    """One served entity, resolved to something the gateway can call.

    ``base_url`` is OpenAI-style for ``worker`` and ``openai`` (``.../v1``: append
    ``/chat/completions``) and the API root for ``anthropic`` (append ``/v1/messages``).
    ``api_key`` is the resolved secret: never log or return it (it is left out of ``repr``).
    ``ready`` is false while a worker is starting or restarting.
    """

    entity_name: str
    served_entity_name: str
    served_entity_id: str
    model_name: str | None
    model_version: str | None
    kind: UpstreamKind
    base_url: str
    upstream_model: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S
    ready: bool = True
    worker_key: str | None = None
    runtime: str | None = None  # for workers: "llama.cpp" or "mlflow.pyfunc"
    #: The URL was written by someone other than an admin: connect only to addresses the
    #: egress policy allows (checked after DNS resolution, on every new connection).
    egress_restricted: bool = False
    #: The context window Bastion gave the worker, in tokens (None: not known).
    context_tokens: int | None = None


@dataclass(frozen=True)
class RoutePlan:
    endpoint_name: str
    entities: tuple[Upstream, ...]
    weights: tuple[int, ...]
    fallback: bool
    config_version: int
    tags: dict[str, str]
    payload_table: str
    ai_gateway: dict[str, Any]
    endpoint_id: int = 0
    #: Parsed from ``ai_gateway`` once per config version; None where none are set.
    guardrails: Guardrails | None = None
    rate_limits: RateLimits | None = None

    def order(self, draw: float) -> tuple[Upstream, ...]:
        """The entity picked by traffic weights for ``draw`` in [0, 1), then (for fallback)
        the others in config order.

        >>> plan.order(random.random())[0]  # the entity to call first
        """
        total = sum(self.weights)
        if not self.entities:
            return ()
        chosen = 0
        if total > 0:
            point = draw * total
            for index, weight in enumerate(self.weights):
                if point < weight:
                    chosen = index
                    break
                point -= weight
            else:
                chosen = len(self.weights) - 1
        first = self.entities[chosen]
        return (first, *(e for i, e in enumerate(self.entities) if i != chosen))


@dataclass(frozen=True)
class EntityState:
    deployment: str  # DEPLOYMENT_READY | DEPLOYMENT_CREATING | DEPLOYMENT_RECOVERING | ..._FAILED
    message: str | None = None


@dataclass(frozen=True)
class EndpointState:
    ready: str  # READY | NOT_READY
    config_update: str  # NOT_UPDATING | IN_PROGRESS | UPDATE_FAILED
    message: str | None
    entities: dict[str, EntityState]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ready": self.ready, "config_update": self.config_update}
        if self.message:
            out["message"] = self.message
        return out


_DEPLOYMENT = {
    WorkerState.READY: "DEPLOYMENT_READY",
    WorkerState.STARTING: "DEPLOYMENT_CREATING",
    WorkerState.RESTARTING: "DEPLOYMENT_RECOVERING",
    WorkerState.FAILED: "DEPLOYMENT_FAILED",
    WorkerState.STOPPED: "DEPLOYMENT_CREATING",
}


@dataclass
class _Snapshot:
    key: tuple[int, int]
    plans: dict[str, RoutePlan]
    states: dict[str, EndpointState]


def worker_spec_for(model_name: str, version: int, kind: ArtifactKind, location: str) -> WorkerSpec:
    """The worker that serves one model version (shared by every endpoint serving it)."""
    key = f"{model_name}/{version}"
    upstream_model = re.sub(r"[^A-Za-z0-9_.\-]", "-", f"{model_name}-{version}")
    if kind is ArtifactKind.GGUF:
        return llama_cpp_spec(key, Path(location), upstream_model)
    return pyfunc_spec(key, Path(location), upstream_model)


class EndpointRouter:
    def __init__(
        self,
        metastore: Metastore,
        endpoints: EndpointStore,
        registry: ModelRegistry,
        secrets: SecretStore,
        supervisor: WorkerSupervisor | None,
        *,
        worker_env: Callable[[str], tuple[tuple[str, str], ...]] | None = None,
        secret_guard: SecretGuard | None = None,
        trusted: Callable[[int | str], bool] | None = None,
    ) -> None:
        """``worker_env(worker_key)``: extra environment for MLflow pyfunc workers (where
        their spans go; see :mod:`.agent_traces`). ``secret_guard(principal, reference)``
        raises unless the principal who put a secret reference into the serving path may
        still use it; it runs on every rebuild, so revocations apply on the next request.
        ``trusted(principal)``: whether URLs that principal wrote skip the egress policy
        (admins); None trusts nobody."""
        self._metastore = metastore
        self._endpoints = endpoints
        self._registry = registry
        self._secrets = secrets
        self.supervisor = supervisor
        self.worker_env = worker_env
        self.secret_guard = secret_guard
        self.trusted = trusted
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

    # -- the hot path -------------------------------------------------------------------------

    def _key(self) -> tuple[int, int]:
        return (
            self._metastore.generation,
            self.supervisor.generation if self.supervisor is not None else 0,
        )

    def snapshot(self) -> _Snapshot:
        snap = self._snapshot
        if snap is not None and snap.key == self._key():
            return snap
        with self._lock:
            snap = self._snapshot
            key = self._key()
            if snap is None or snap.key != key:
                snap = self._build(key)
                self._snapshot = snap
            return snap

    def stale(self) -> bool:
        """Whether the next :meth:`plan` rebuilds the snapshot (SQL; an async caller may want
        to run that one call in a thread)."""
        snap = self._snapshot
        return snap is None or snap.key != self._key()

    def plan(self, endpoint_name: str) -> RoutePlan:
        """Where requests to ``endpoint_name`` go now. Raises NotFound or Unavailable."""
        snap = self.snapshot()
        plan = snap.plans.get(endpoint_name)
        if plan is not None:
            return plan
        state = snap.states.get(endpoint_name)
        if state is None:
            raise NotFound(f"Serving endpoint '{endpoint_name}' does not exist.")
        raise Unavailable(
            f"Serving endpoint '{endpoint_name}' has no servable entity: {state.message}"
        )

    def endpoint_state(self, endpoint_name: str) -> EndpointState:
        state = self.snapshot().states.get(endpoint_name)
        if state is None:
            raise NotFound(f"Serving endpoint '{endpoint_name}' does not exist.")
        return state

    def endpoint_names(self) -> list[str]:
        return sorted(self.snapshot().states)

    # -- building -----------------------------------------------------------------------------

    def _build(self, key: tuple[int, int]) -> _Snapshot:
        plans: dict[str, RoutePlan] = {}
        states: dict[str, EndpointState] = {}
        wanted: set[str] = set()
        for record in self._endpoints.all():
            plan, state = self._resolve_endpoint(record, wanted)
            states[record.name] = state
            if plan is not None:
                plans[record.name] = plan
        if self.supervisor is not None:
            self.supervisor.retain(wanted)
        return _Snapshot(key, plans, states)

    def _resolve_endpoint(
        self, record: EndpointRecord, wanted: set[str]
    ) -> tuple[RoutePlan | None, EndpointState]:
        weights_by_name = {
            r["served_entity_name"]: int(r["traffic_percentage"])
            for r in record.config.get("traffic_config", {}).get("routes", [])
        }
        upstreams: list[Upstream] = []
        weights: list[int] = []
        entity_states: dict[str, EntityState] = {}
        for entity in record.config.get("served_entities", []):
            name = entity["name"]
            try:
                upstream = self._resolve_entity(record, entity)
            except BastionError as exc:
                entity_states[name] = EntityState("DEPLOYMENT_FAILED", exc.message)
                continue
            if upstream.worker_key is not None:
                wanted.add(upstream.worker_key)
                worker = self.supervisor.get(upstream.worker_key) if self.supervisor else None
                if worker is None:
                    entity_states[name] = EntityState("DEPLOYMENT_CREATING", "no worker yet")
                else:
                    entity_states[name] = EntityState(
                        _DEPLOYMENT[worker.state],
                        worker.last_error if worker.state != WorkerState.READY else None,
                    )
            else:
                entity_states[name] = EntityState("DEPLOYMENT_READY")
            upstreams.append(upstream)
            weights.append(weights_by_name.get(name, 0))
        state = _endpoint_state(entity_states, weights_by_name)
        if not upstreams:
            return None, state
        gateway = record.ai_gateway
        try:
            guardrails = parse_guardrails(gateway.get("guardrails"))
            rate_limits = parse_rate_limits(gateway.get("rate_limits"))
        except BastionError as exc:  # stored before a rule tightened: refuse, never serve open
            message = f"ai_gateway: {exc.message}"
            return None, replace(state, ready="NOT_READY", message=message)
        plan = RoutePlan(
            endpoint_name=record.name,
            entities=tuple(upstreams),
            weights=tuple(weights),
            fallback=bool((gateway.get("fallback_config") or {}).get("enabled")),
            config_version=record.config_version,
            tags=dict(record.tags),
            payload_table=payload_table_name(record.name, gateway, record.config),
            ai_gateway=gateway,
            endpoint_id=record.id,
            guardrails=guardrails,
            rate_limits=rate_limits,
        )
        return plan, state

    def _resolve_entity(self, record: EndpointRecord, entity: dict[str, Any]) -> Upstream:
        name = entity["name"]
        timeout = float(entity.get("request_timeout_s") or DEFAULT_TIMEOUT_S)
        if "external_model" in entity:
            external = parse_external_model(entity["external_model"])
            writer: int | str = record.config_updated_by or record.creator
            return self._external(record, name, external, None, None, timeout, writer)
        model = entity["entity_name"]
        version = self._registry.resolve(model, entity["entity_version"])
        if version.external_model is not None:
            return self._external(
                record,
                name,
                version.external_model,
                model,
                str(version.version),
                timeout,
                version.created_by,
            )
        if version.storage_location is None:
            raise Unavailable(f"Version {version.version} of '{model}' has no artifact.")
        spec = worker_spec_for(
            model, version.version, version.artifact_kind, version.storage_location
        )
        pyfunc = version.artifact_kind is not ArtifactKind.GGUF
        if pyfunc and self.worker_env is not None:
            spec = replace(spec, env=spec.env + self.worker_env(spec.key))
        if self.supervisor is None:
            raise Unavailable("No worker supervisor is running in this process.")
        worker = self.supervisor.ensure(spec)
        return Upstream(
            entity_name=model,
            served_entity_name=name,
            served_entity_id=_entity_id(record, name, str(version.version)),
            model_name=model,
            model_version=str(version.version),
            kind="worker",
            base_url=worker.base_url,
            upstream_model=spec.upstream_model,
            timeout_s=timeout,
            ready=worker.state == WorkerState.READY,
            worker_key=spec.key,
            runtime="mlflow.pyfunc" if pyfunc else "llama.cpp",
            context_tokens=spec.context_tokens,
        )

    def _external(
        self,
        record: EndpointRecord,
        name: str,
        external: ExternalModel,
        model: str | None,
        version: str | None,
        timeout: float,
        bound_by: int | str,
    ) -> Upstream:
        """``bound_by``: who put the external config (and its key reference) here."""
        api_key = None
        if external.api_key is not None:
            if self.secret_guard is not None:
                self.secret_guard(bound_by, external.api_key)
            api_key = self._secrets.resolve(external.api_key)
        return Upstream(
            entity_name=model or external.name,
            served_entity_name=name,
            served_entity_id=_entity_id(record, name, version or external.name),
            model_name=model,
            model_version=version,
            kind=external.kind,
            base_url=external.base_url,
            upstream_model=external.name,
            api_key=api_key,
            timeout_s=timeout,
            egress_restricted=not (self.trusted is not None and self.trusted(bound_by)),
        )


def _entity_id(record: EndpointRecord, name: str, version: str) -> str:
    text = f"{record.id}:{name}:{record.config_version}:{version}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _endpoint_state(entities: dict[str, EntityState], weights: dict[str, int]) -> EndpointState:
    failed = {n: s for n, s in entities.items() if s.deployment == "DEPLOYMENT_FAILED"}
    creating = any(s.deployment == "DEPLOYMENT_CREATING" for s in entities.values())
    serving = any(
        s.deployment == "DEPLOYMENT_READY" and weights.get(n, 0) > 0 for n, s in entities.items()
    )
    if failed:
        update = "UPDATE_FAILED"
    elif creating:
        update = "IN_PROGRESS"
    else:
        update = "NOT_UPDATING"
    message = "; ".join(f"{n}: {s.message}" for n, s in failed.items()) or None
    return EndpointState("READY" if serving else "NOT_READY", update, message, dict(entities))
