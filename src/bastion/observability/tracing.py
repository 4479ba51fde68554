"""Request traces: an OpenTelemetry-shaped span tree per gateway request.

The gateway reads the clock at the end of each phase and around each upstream attempt, and
picks the trace id when the request arrives (it sends ``traceparent`` upstream); the tracer
records those marks *after the fact*, instead of propagating span objects through the hot
path. It logs them as one compact record per request (its *facts*, ~15 µs to build, written
with the payload row); the table writer expands each into the request's span rows when it
commits them to ``system.tracing.spans`` — in its commit helper process by default
(:mod:`bastion.observability.spans`). The optional OTLP export builds the same spans on its
own thread. Neither is on the request path.

The tree of one request::

    gateway <api>                     SERVER    whole request, HTTP status
    ├── authenticate                  INTERNAL  read the body, check the credential
    ├── route                         INTERNAL  parse, resolve the route plan
    ├── authorize                     INTERNAL  CAN_QUERY on the endpoint
    ├── rate_limit, guardrails input  INTERNAL  where the endpoint configures them
    ├── chat <upstream_model>         CLIENT    one per upstream attempt, ``gen_ai.*``
    └── guardrails output             INTERNAL  where the endpoint configures them

A valid incoming W3C ``traceparent`` header makes the SERVER span a child of the caller's
span, in the caller's trace. The trace id reaches the payload row's ``trace_id``; spans
emitted elsewhere (an MLflow pyfunc agent, say) arrive through the OTLP receiver
(:func:`ingest_spans`, :func:`otlp_protobuf_spans`) in the same trace.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from bastion.bootstrap import ADMIN_USER, register_system_table
from bastion.errors import AlreadyExists, BastionError, InvalidRequest
from bastion.observability.spans import FACTS, SPAN_COLUMNS, SpanExpander, spans_of
from bastion.observability.traceparent import new_span_id, new_trace_id, parse_traceparent
from bastion.platform import Platform
from bastion.tables.system import define_table

if TYPE_CHECKING:
    from bastion.identity.model import Caller
    from bastion.observability.exchange import Exchange

logger = logging.getLogger(__name__)

SPANS = define_table(
    "system.tracing.spans",
    "span_id",
    "OpenTelemetry spans of serving requests and agents; trace_id joins payload rows.",
    list(SPAN_COLUMNS),
    expander=SpanExpander(),
)

SERVICE_NAME = "bastion-gateway"
MAX_INGEST_SPANS = 1000
KINDS = ("INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_OTLP_KIND = {"UNSPECIFIED": 0, "INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4}
_OTLP_KIND["CONSUMER"] = 5
_OTLP_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_CHUNK = 32  # exchanges per append to the writer (see Tracer._run)
_GEN_AI_SYSTEM = {"openai": "openai", "anthropic": "anthropic", "worker": "llama.cpp"}


def ensure_tracing_table(platform: Platform) -> None:
    """Register ``system.tracing.spans`` in the catalog (owned by admin) and with the writer."""
    admin = platform.identity.find(ADMIN_USER)
    owner = admin.id if admin else 1
    with contextlib.suppress(AlreadyExists):  # another replica registered it just now
        register_system_table(platform, SPANS, owner)
    platform.writer.register(SPANS.spec(platform.table_storage))


def _gen_ai_system(entity: Any) -> str:
    kind = getattr(entity, "kind", None) or "unknown"
    if kind == "worker" and getattr(entity, "runtime", None):
        return str(entity.runtime)
    return _GEN_AI_SYSTEM.get(kind, str(kind))


class Tracer:
    """Turns each finished :class:`Exchange` into spans in ``system.tracing.spans``.

    Call :meth:`record` before the payload row is logged: it sets ``exchange.trace_id``.
    By default the request's trace is in the writer's log before :meth:`record` returns, as
    durable as its payload row: one compact record of its facts (~15 µs to build; the writer
    expands it into span rows when it commits). With ``deferred=True`` :meth:`record` only
    queues the exchange and a daemon thread logs the queue every ``interval_s`` — a crash can
    then lose the last moment's spans, and that thread's batches compete with the requests for
    the GIL: at concurrency 1 the gateway's p99 was higher that way (docs/benchmarks.md).
    With ``otlp_endpoint`` (an OTLP/HTTP collector base URL, e.g. ``http://otel:4318``) the
    spans are also exported, in batches, from a background thread (which builds them).
    """

    def __init__(
        self,
        platform: Platform,
        *,
        otlp_endpoint: str | None = None,
        service_name: str = SERVICE_NAME,
        otlp_headers: Mapping[str, str] | None = None,
        deferred: bool = False,
        max_pending: int = 16384,
        interval_s: float = 0.25,
    ) -> None:
        self._writer = platform.writer
        ensure_tracing_table(platform)
        self.resource = {"service.name": service_name, "service.namespace": "bastion"}
        self.exporter = (
            OtlpExporter(otlp_endpoint, self.resource, headers=otlp_headers)
            if otlp_endpoint
            else None
        )
        self.dropped = 0
        # A deque, not a Queue: appending takes no lock and wakes no thread. The tracer
        # thread drains it every ``interval_s``, so its work comes in batches rather than
        # contending for the GIL with every request.
        self._pending: collections.deque[Exchange] | None = None
        self._max_pending = max_pending
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None
        if deferred:
            self._pending = collections.deque()
            self._thread = threading.Thread(target=self._run, name="tracer", daemon=True)
            self._thread.start()

    def record(self, exchange: Exchange) -> None:
        """Trace a finished exchange; never raises into the request.

        The gateway sets ``exchange.trace_id`` when the request arrives (it sends it on
        upstream); an exchange without one gets it here, from its ``traceparent`` or anew.
        """
        if exchange.trace_id is None:
            exchange.continue_trace()
        pending = self._pending
        if pending is None:
            self._write([exchange])
        elif len(pending) < self._max_pending:
            pending.append(exchange)
        else:  # the tracer fell behind: shed spans, not requests
            self.dropped += 1

    def _run(self) -> None:
        pending = self._pending
        assert pending is not None
        while True:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            closing = self._closing
            with self._idle:
                self._busy = bool(pending)
            while pending:
                batch = [pending.popleft() for _ in range(min(len(pending), _CHUNK))]
                try:
                    self._write(batch)
                except Exception:  # e.g. the writer's disk: keep the thread alive
                    logger.exception("could not trace %d requests", len(batch))

            with self._idle:
                self._busy = False
                self._idle.notify_all()
            if closing:
                return

    def _write(self, batch: list[Exchange]) -> None:
        records: list[dict[str, Any]] = []
        for exchange in batch:
            try:
                facts = self.facts(exchange)
            except Exception:  # a tracing bug must not fail a request
                logger.exception("could not trace request %s", exchange.request_id)
                continue
            records.append({"span_id": facts["span_id"], FACTS: facts})
        if not records:
            return
        try:
            self._writer.append_many(SPANS.full_name, records)
        except BastionError:
            logger.exception("could not log the traces of %d requests", len(batch))
        if self.exporter is not None:
            self.exporter.export([record[FACTS] for record in records])

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every recorded exchange has its spans in the writer."""
        if self._pending is None or self._thread is None:
            return
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while (self._pending or self._busy) and time.monotonic() < deadline:
                self._wake.set()
                self._idle.wait(0.05)

    def facts(self, exchange: Exchange) -> dict[str, Any]:
        """What the span tree of ``exchange`` is built from, as one log record holds it
        (:func:`bastion.observability.spans.spans_of` builds the tree): wall-clock times,
        a new root span id, names, status and token counts."""
        # perf_counter instants -> wall-clock seconds, anchored at the request's start.
        offset = exchange.started_wall - exchange.started
        finished = (exchange.finished or exchange.started) + offset
        failed = exchange.status >= 400 or exchange.error is not None
        entity, chat = exchange.entity, exchange.request
        return {
            "trace_id": exchange.trace_id or new_trace_id(),
            "span_id": new_span_id(),
            "parent_span_id": exchange.parent_span_id,
            "api": exchange.api.value,
            "start": exchange.started_wall,
            "end": finished,
            "status": exchange.status,
            "error": (exchange.error or f"HTTP {exchange.status}") if failed else None,
            "request_id": exchange.request_id,
            "endpoint": exchange.endpoint,
            "served_entity": getattr(entity, "served_entity_name", None),
            "overhead_ms": round(exchange.overhead_ms, 3),
            "upstream_failures": exchange.upstream_failures,
            "user": exchange.caller.name if exchange.caller else None,
            "user_agent": exchange.headers.get("user-agent"),
            "phases": [
                mark + offset if mark else None
                for mark in (exchange.authenticated, exchange.routed, exchange.authorized)
            ],
            "checks": [
                [step.name, step.started + offset, step.ended + offset, step.attributes, step.error]
                for step in exchange.checks
            ],
            "chat": (
                [chat.max_tokens, chat.temperature, chat.top_p, bool(chat.stream)] if chat else None
            ),
            "response_model": (exchange.response or {}).get("model"),
            "input_tokens": exchange.input_tokens,
            "output_tokens": exchange.output_tokens,
            "attempts": [
                [
                    attempt.span_id,
                    attempt.started + offset,
                    (attempt.ended or exchange.finished or attempt.started) + offset,
                    attempt.error,
                    _gen_ai_system(attempt.entity),
                    attempt.entity.upstream_model,
                    attempt.entity.served_entity_name,
                    attempt.entity.model_name,
                    attempt.entity.model_version,
                    attempt.entity.base_url,
                ]
                for attempt in exchange.attempts
            ],
            "resource": self.resource,
        }

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is pending, then stop (and flush the OTLP exporter)."""
        if self._pending is not None and self._thread is not None:
            self._closing = True
            self._wake.set()
            self._thread.join(timeout_s)
            self._pending = None
        if self.exporter is not None:
            self.exporter.close()


def tracer_for(platform: Platform) -> Tracer:
    """A :class:`Tracer` exporting to ``settings.otlp_endpoint`` when that is set.

    ``settings.otlp_headers`` adds headers to the export (``k1=v1,k2=v2``, as the OTel SDK's
    ``OTEL_EXPORTER_OTLP_HEADERS``); ``settings.otel_service_name`` names the service.
    """
    settings = platform.settings
    headers = {}
    for pair in (settings.otlp_headers or "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            headers[key.strip()] = value.strip()
    return Tracer(
        platform,
        otlp_endpoint=settings.otlp_endpoint,
        service_name=settings.otel_service_name or SERVICE_NAME,
        otlp_headers=headers,
    )


# -- spans from elsewhere (agents) ----------------------------------------------------------


def _nanos(value: Any, field: str) -> int:
    try:
        nanos = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"span field {field} must be an integer (nanoseconds)") from None
    if nanos <= 0:
        raise InvalidRequest(f"span field {field} must be positive")
    return nanos


def _any_value(value: Any) -> Any:
    """An OTLP ``AnyValue`` (``{"stringValue": ...}``) or a plain value, as a plain value."""
    if isinstance(value, Mapping):
        for key in ("stringValue", "intValue", "doubleValue", "boolValue"):
            if key in value:
                return value[key]
        return str(dict(value))
    return value


def _attributes(raw: Any) -> dict[str, str]:
    """OTLP ``[{"key": k, "value": {...}}]`` or a plain ``{k: v}`` mapping, as strings."""
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        items: Iterable[tuple[Any, Any]] = raw.items()
    elif isinstance(raw, list):
        try:
            items = [(a["key"], a.get("value")) for a in raw]
        except (TypeError, KeyError):
            raise InvalidRequest("span attributes must be {key, value} objects") from None
    else:
        raise InvalidRequest("span attributes must be a list or an object")
    out = {}
    for key, value in items:
        plain = _any_value(value)
        if plain is not None:
            out[str(key)] = str(plain).lower() if isinstance(plain, bool) else str(plain)
    return out


def _kind(raw: Any) -> str:
    if raw is None:
        return "INTERNAL"
    if isinstance(raw, int) and not isinstance(raw, bool):
        names = {v: k for k, v in _OTLP_KIND.items()}
        if raw in names:
            return "INTERNAL" if raw == 0 else names[raw]
    elif isinstance(raw, str):
        name = raw.upper().removeprefix("SPAN_KIND_")
        if name in KINDS or name == "UNSPECIFIED":
            return "INTERNAL" if name == "UNSPECIFIED" else name
    raise InvalidRequest(f"unknown span kind {raw!r}")


def _status(raw: Any) -> tuple[str, str | None]:
    if raw is None:
        return "UNSET", None
    if not isinstance(raw, Mapping):
        raise InvalidRequest("span status must be an object")
    code = raw.get("code", 0)
    names = {v: k for k, v in _OTLP_STATUS.items()}
    if isinstance(code, int) and code in names:
        name = names[code]
    elif isinstance(code, str) and code.upper().removeprefix("STATUS_CODE_") in _OTLP_STATUS:
        name = code.upper().removeprefix("STATUS_CODE_")
    else:
        raise InvalidRequest(f"unknown span status code {code!r}")
    message = raw.get("message")
    return name, str(message) if message else None


def span_row(
    span: Mapping[str, Any], resource: Mapping[str, str], caller: Caller | None
) -> dict[str, Any]:
    """A ``system.tracing.spans`` row from one OTLP/JSON span; :class:`InvalidRequest` if bad."""
    if not isinstance(span, Mapping):
        raise InvalidRequest("each span must be an object")
    trace_id = str(span.get("traceId") or span.get("trace_id") or "").lower()
    span_id = str(span.get("spanId") or span.get("span_id") or "").lower()
    parent = span.get("parentSpanId") or span.get("parent_span_id") or None
    if not _TRACE_ID.match(trace_id) or trace_id == _ZERO_TRACE:
        raise InvalidRequest(f"invalid traceId {trace_id!r}: 32 lowercase hex digits")
    if not _SPAN_ID.match(span_id) or span_id == _ZERO_SPAN:
        raise InvalidRequest(f"invalid spanId {span_id!r}: 16 lowercase hex digits")
    if parent is not None:
        parent = str(parent).lower()
        if not _SPAN_ID.match(parent):
            raise InvalidRequest(f"invalid parentSpanId {parent!r}: 16 lowercase hex digits")
    name = span.get("name")
    if not isinstance(name, str) or not name or len(name) > 1024:
        raise InvalidRequest("span name must be a non-empty string")
    start = _nanos(span.get("startTimeUnixNano"), "startTimeUnixNano")
    end = _nanos(span.get("endTimeUnixNano"), "endTimeUnixNano")
    if end < start:
        raise InvalidRequest("span ends before it starts")
    status_code, status_message = _status(span.get("status"))
    attributes = _attributes(span.get("attributes"))
    if caller is not None:
        attributes["bastion.ingested_by"] = caller.name
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "kind": _kind(span.get("kind")),
        "start_time": datetime.fromtimestamp(start / 1e9, UTC),
        "end_time": datetime.fromtimestamp(end / 1e9, UTC),
        "duration_ms": (end - start) / 1e6,
        "status_code": status_code,
        "status_message": status_message,
        "attributes": attributes,
        "resource": dict(resource),
        "request_id": attributes.get("bastion.request_id"),
        "endpoint_name": attributes.get("bastion.endpoint"),
        "service_name": resource.get("service.name") or "agent",
    }


def ingest_spans(
    platform: Platform,
    caller: Caller | None,
    spans: list[dict[str, Any]],
    *,
    resource: Mapping[str, Any] | None = None,
) -> int:
    """Validate OTLP/JSON spans (from an agent, say) and append them; returns how many.

    ``spans`` may be flat span objects or one OTLP ``{"resourceSpans": [...]}`` export
    request. All or none are written; the writer's table must be registered
    (:func:`ensure_tracing_table`).
    """
    if not isinstance(spans, list):
        raise InvalidRequest("spans must be a list")
    base = _attributes(resource) if resource is not None else {}
    rows: list[dict[str, Any]] = []
    for item in spans:
        if isinstance(item, Mapping) and "resourceSpans" in item:
            for resource_spans in item.get("resourceSpans") or []:
                attrs = {
                    **base,
                    **_attributes((resource_spans.get("resource") or {}).get("attributes")),
                }
                for scope_spans in resource_spans.get("scopeSpans") or []:
                    for span in scope_spans.get("spans") or []:
                        rows.append(span_row(span, attrs, caller))
        else:
            rows.append(span_row(item, base, caller))
        if len(rows) > MAX_INGEST_SPANS:
            raise InvalidRequest(f"at most {MAX_INGEST_SPANS} spans per request")
    platform.writer.append_many(SPANS.full_name, rows)
    return len(rows)


def _plain_value(value: Any) -> Any:
    """A protobuf OTLP ``AnyValue`` as a plain value (arrays and maps as JSON text)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return json.dumps([_plain_value(v) for v in value.array_value.values], default=str)
    if kind == "kvlist_value":
        return json.dumps(
            {kv.key: _plain_value(kv.value) for kv in value.kvlist_value.values}, default=str
        )
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def otlp_protobuf_spans(body: bytes) -> list[dict[str, Any]]:
    """An OTLP/HTTP protobuf ``ExportTraceServiceRequest`` as the JSON form :func:`ingest_spans`
    takes (what OpenTelemetry SDKs send by default, MLflow's exporter included)."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError:
        raise InvalidRequest("The body is not an OTLP ExportTraceServiceRequest.") from None
    resource_spans = []
    for rs in request.resource_spans:
        spans = []
        for scope in rs.scope_spans:
            for span in scope.spans:
                spans.append(
                    {
                        "traceId": span.trace_id.hex(),
                        "spanId": span.span_id.hex(),
                        "parentSpanId": span.parent_span_id.hex() or None,
                        "name": span.name,
                        "kind": span.kind,
                        "startTimeUnixNano": span.start_time_unix_nano,
                        "endTimeUnixNano": span.end_time_unix_nano,
                        "attributes": {a.key: _plain_value(a.value) for a in span.attributes},
                        "status": {"code": span.status.code, "message": span.status.message},
                    }
                )
        resource = {a.key: _plain_value(a.value) for a in rs.resource.attributes}
        resource_spans.append(
            {"resource": {"attributes": resource}, "scopeSpans": [{"spans": spans}]}
        )
    return [{"resourceSpans": resource_spans}]


# -- OTLP/HTTP export ---------------------------------------------------------------------


def _otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _otlp_attributes(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _otlp_value(v)} for k, v in attributes.items() if v is not None]


def otlp_request(spans: list[dict[str, Any]], resource: Mapping[str, str]) -> dict[str, Any]:
    """An OTLP/JSON ``ExportTraceServiceRequest`` for spans built by :class:`Tracer`."""
    out = []
    for s in spans:
        otlp: dict[str, Any] = {
            "traceId": s["trace_id"],
            "spanId": s["span_id"],
            "name": s["name"],
            "kind": _OTLP_KIND[s["kind"]],
            "startTimeUnixNano": str(int(s["start"] * 1e9)),
            "endTimeUnixNano": str(int(s["end"] * 1e9)),
            "attributes": _otlp_attributes(s["attributes"]),
            "status": {"code": _OTLP_STATUS[s["status_code"]]},
        }
        if s["parent_span_id"]:
            otlp["parentSpanId"] = s["parent_span_id"]
        if s["status_message"]:
            otlp["status"]["message"] = s["status_message"]
        out.append(otlp)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _otlp_attributes(resource)},
                "scopeSpans": [{"scope": {"name": "bastion.gateway"}, "spans": out}],
            }
        ]
    }


class OtlpExporter:
    """Batches spans to an OTLP/HTTP collector (JSON encoding) from a daemon thread.

    :meth:`export` only enqueues requests' trace facts (those beyond ``max_queue`` requests
    are dropped and their spans counted), so a slow or absent collector never reaches the
    request path; the thread builds the spans (``max_batch`` requests' spans per post).
    """

    def __init__(
        self,
        endpoint: str,
        resource: Mapping[str, str],
        *,
        headers: Mapping[str, str] | None = None,
        max_queue: int = 8192,
        max_batch: int = 512,
        interval_s: float = 1.0,
        timeout_s: float = 10.0,
    ) -> None:
        base = endpoint.rstrip("/")
        self.url = base if base.endswith("/v1/traces") else base + "/v1/traces"
        self.resource = dict(resource)
        self.dropped = 0
        self.exported = 0
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue(max_queue)
        self._max_batch = max_batch
        self._interval_s = interval_s
        self._client = httpx.Client(
            timeout=timeout_s, headers={"content-type": "application/json", **(headers or {})}
        )
        self._thread = threading.Thread(target=self._run, name="otlp-exporter", daemon=True)
        self._thread.start()

    def export(self, traces: Sequence[Mapping[str, Any]]) -> None:
        """Queue requests' trace facts (:meth:`Tracer.facts`) for export."""
        for facts in traces:
            try:
                self._queue.put_nowait(facts)
            except queue.Full:
                self.dropped += len(spans_of(facts))

    def _run(self) -> None:
        closing = False
        while not closing:
            batch: list[Mapping[str, Any]] = []
            try:
                item = self._queue.get(timeout=self._interval_s)
            except queue.Empty:
                continue
            while True:
                if item is None:
                    closing = True
                    break
                batch.append(item)
                if len(batch) >= self._max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            spans: list[dict[str, Any]] = []
            for facts in batch:
                try:
                    spans += spans_of(facts)
                except Exception:  # a tracing bug must not stop the exporter
                    logger.exception("could not build the spans of a trace")
            if spans:
                self._send(spans)

    def _send(self, batch: list[dict[str, Any]]) -> None:
        try:
            reply = self._client.post(self.url, json=otlp_request(batch, self.resource))
            reply.raise_for_status()
            self.exported += len(batch)
        except Exception as error:  # the collector is optional: count and go on
            self.dropped += len(batch)
            logger.warning("OTLP export of %d spans to %s failed: %s", len(batch), self.url, error)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, then stop."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)
        self._client.close()


__all__ = [
    "SPANS",
    "OtlpExporter",
    "Tracer",
    "ensure_tracing_table",
    "ingest_spans",
    "new_span_id",
    "new_trace_id",
    "otlp_protobuf_spans",
    "otlp_request",
    "parse_traceparent",
    "span_row",
    "tracer_for",
]
