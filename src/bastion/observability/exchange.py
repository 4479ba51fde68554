"""The record of one gateway query, shared by the gateway (which fills it) and the loggers
(payload rows, usage, metrics, spans) that read it when the query is over.

It lives here, below the gateway, so that observability never imports serving: what the
loggers need of the gateway's own objects (the served entity, the route plan, the parsed
request) is stated as protocols, which those objects satisfy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from bastion.identity.model import Caller
from bastion.observability.traceparent import new_span_id, new_trace_id, parse_traceparent


class ClientApiName(Protocol):
    """Which client API a query came in on (the gateway's ``ClientApi``)."""

    @property
    def value(self) -> str: ...


class ServedEntity(Protocol):
    """The served entity a query went to (the serving router's ``Upstream``)."""

    @property
    def served_entity_id(self) -> str: ...
    @property
    def served_entity_name(self) -> str: ...
    @property
    def entity_name(self) -> str: ...
    @property
    def model_name(self) -> str | None: ...
    @property
    def model_version(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def upstream_model(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def runtime(self) -> str | None: ...


class ServingPlan(Protocol):
    """Where an endpoint's queries went (the serving router's ``RoutePlan``)."""

    @property
    def endpoint_name(self) -> str: ...
    @property
    def endpoint_id(self) -> int: ...
    @property
    def config_version(self) -> int: ...
    @property
    def tags(self) -> dict[str, str]: ...
    @property
    def payload_table(self) -> str: ...


class ChatSummary(Protocol):
    """What the loggers read of a parsed request (the protocols' ``ChatRequest``)."""

    @property
    def model(self) -> str: ...
    @property
    def stream(self) -> bool: ...
    @property
    def max_tokens(self) -> int | None: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def top_p(self) -> float | None: ...
    @property
    def client_request_id(self) -> str | None: ...
    @property
    def usage_context(self) -> dict[str, Any] | None: ...
    @property
    def notes(self) -> list[str]: ...


class Chargeable(Protocol):
    """A rate-limit admission, charged the query's tokens when it is over."""

    def charge(self, tokens: int) -> None: ...


@dataclass
class Attempt:
    """One call to an upstream: its CLIENT span id (sent on as ``traceparent``) and timing."""

    entity: ServedEntity
    span_id: str
    started: float
    ended: float = 0.0
    error: str | None = None


@dataclass
class Check:
    """A governance step that ran for this query (rate limit, input or output guardrails):
    an INTERNAL span, with what it found."""

    name: str
    started: float
    ended: float
    attributes: dict[str, Any]
    error: str | None = None


@dataclass
class Exchange:
    """Everything known about one query, handed to the logger when it is over.

    ``authenticated``, ``routed`` and ``authorized`` are ``perf_counter`` instants at the end
    of each phase, ``attempts`` the upstream calls in order; the tracer builds the spans from
    them after the response, so tracing costs the request path a few clock reads.
    """

    request_id: str
    api: ClientApiName
    started: float
    started_wall: float
    caller: Caller | None = None
    endpoint: str | None = None
    request: ChatSummary | None = None
    raw_body: bytes = b""
    entity: ServedEntity | None = None
    plan: ServingPlan | None = None
    status: int = 200
    response: dict[str, Any] | None = None
    error: str | None = None
    upstream_s: float = 0.0
    finished: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    trace_id: str | None = None
    parent_span_id: str | None = None
    authenticated: float = 0.0
    routed: float = 0.0
    authorized: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    admission: Chargeable | None = None
    upstream_failures: int = 0
    logged: bool = False
    #: ``normal``, ``eval`` or ``redteam`` (with ``scan_id``), as :func:`scan_tags` allowed.
    scan_type: str = "normal"
    scan_id: str | None = None

    def continue_trace(self) -> None:
        """Join the caller's trace (a valid ``traceparent`` header), else start a new one."""
        incoming = parse_traceparent(self.headers.get("traceparent"))
        if incoming is None:
            self.trace_id = new_trace_id()
        else:
            self.trace_id, self.parent_span_id = incoming

    def attempt(self, entity: ServedEntity) -> Attempt:
        """Start an upstream call: a new CLIENT span in this exchange's trace."""
        self.entity = entity
        attempt = Attempt(entity, new_span_id(), time.perf_counter())
        self.attempts.append(attempt)
        return attempt

    def traceparent(self, attempt: Attempt) -> str:
        return f"00-{self.trace_id}-{attempt.span_id}-01"

    @property
    def total_ms(self) -> float:
        return (self.finished - self.started) * 1000

    @property
    def overhead_ms(self) -> float:
        return max(self.total_ms - self.upstream_s * 1000, 0.0)
