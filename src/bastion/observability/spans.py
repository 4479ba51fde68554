"""A gateway request's span tree from its *facts*: the one compact record the tracer logs.

The tracer (:mod:`bastion.observability.tracing`) does not log the five or more span rows of
each request. It logs one record of the request's facts — the clock marks of its phases and
upstream attempts, status, names, token counts — and the table writer expands it into the
span rows of ``system.tracing.spans`` when it commits (:class:`SpanExpander`, in the writer's
commit helper process by default). The request's server process thus builds and writes about
a fifth of the bytes, and none of the rows.

Expansion is deterministic: the children's span ids derive from the root's, so a record that
is replayed after a crash yields the same rows (and the writer's de-duplication holds).
This module imports nothing of the server: the commit helper loads it to expand.

>>> facts = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "parent_span_id": None,
...          "api": "chat/completions", "start": 1.0, "end": 1.05, "status": 200,
...          "error": None, "request_id": "r1", "endpoint": "e", "phases": [1.001, None, None],
...          "checks": [], "attempts": [], "resource": {"service.name": "bastion-gateway"}}
>>> [(s["name"], s["status_code"]) for s in spans_of(facts)]
[('gateway chat/completions', 'UNSET'), ('authenticate', 'UNSET'), ('route', 'UNSET')]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

FACTS = "trace"
"""The field of a ``system.tracing.spans`` log record that holds a request's facts."""

SPAN_COLUMNS = (
    ("trace_id", "string"),
    ("span_id", "string"),
    ("parent_span_id", "string"),
    ("name", "string"),
    ("kind", "string"),
    ("start_time", "timestamp"),
    ("end_time", "timestamp"),
    ("duration_ms", "double"),
    ("status_code", "string"),
    ("status_message", "string"),
    ("attributes", "map<string,string>"),
    ("resource", "map<string,string>"),
    ("request_id", "string"),
    ("endpoint_name", "string"),
    ("service_name", "string"),
)
"""The columns of ``system.tracing.spans`` and their types."""
COLUMNS = tuple(name for name, _ in SPAN_COLUMNS)

_PHASES = ("authenticate", "route", "authorize")


def child_span_id(root: str, number: int) -> str:
    """The id of the root's ``number``-th INTERNAL child: 16 hex digits, never all zero."""
    digest = hashlib.blake2b(f"{root}/{number}".encode(), digest_size=8).hexdigest()
    return digest if digest != "0" * 16 else "0" * 15 + "1"


def _span(
    facts: Mapping[str, Any],
    span_id: str,
    parent: str | None,
    name: str,
    kind: str,
    start: float,
    end: float,
    attributes: dict[str, Any],
    error: str | None,
) -> dict[str, Any]:
    """One span, with wall-clock times in seconds and typed attributes (the OTLP shape)."""
    return {
        "trace_id": facts["trace_id"],
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "kind": kind,
        "start": start,
        "end": max(end, start),
        "status_code": "ERROR" if error is not None else "UNSET",
        "status_message": error,
        "attributes": attributes,
        "request_id": facts.get("request_id"),
        "endpoint_name": facts.get("endpoint"),
    }


def spans_of(facts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The span tree of one request: SERVER root, its phases (authenticate, route, authorize,
    then rate limit and guardrails where they ran), one CLIENT span per upstream attempt.

    ``facts`` is what :meth:`bastion.observability.tracing.Tracer.facts` recorded; times are
    wall-clock seconds. A phase without its end mark is where the request failed: it ends
    with the request, with its error.
    """
    root = facts["span_id"]
    api = facts["api"]
    start, finished = facts["start"], facts["end"]
    error = facts.get("error")
    request_id, endpoint = facts.get("request_id"), facts.get("endpoint")
    root_attributes: dict[str, Any] = {
        "http.request.method": "POST",
        "http.route": f"/serving-endpoints/{api}",
        "http.response.status_code": facts["status"],
        "bastion.api": api,
        "bastion.request_id": request_id,
        "bastion.endpoint": endpoint,
        "bastion.served_entity": facts.get("served_entity"),
        "bastion.overhead_ms": facts.get("overhead_ms"),
        "bastion.upstream_failures": facts.get("upstream_failures") or None,
        "enduser.id": facts.get("user"),
        "user_agent.original": facts.get("user_agent"),
    }
    spans = [
        _span(
            facts,
            root,
            facts.get("parent_span_id"),
            f"gateway {api}",
            "SERVER",
            start,
            finished,
            root_attributes,
            error,
        )
    ]
    phase_attributes = {"bastion.endpoint": endpoint, "bastion.request_id": request_id}
    internal: list[tuple[str, float, float, dict[str, Any], str | None]] = []
    begin = start
    for name, mark in zip(_PHASES, facts.get("phases") or (), strict=False):
        end = mark if mark else finished
        internal.append((name, begin, end, phase_attributes, None if mark else error))
        if not mark:
            break
        begin = end
    for name, began, ended, attributes, check_error in facts.get("checks") or ():
        internal.append((name, began, ended, {**phase_attributes, **attributes}, check_error))
    for number, (name, began, ended, attributes, failed) in enumerate(internal, 1):
        spans.append(
            _span(
                facts,
                child_span_id(root, number),
                root,
                name,
                "INTERNAL",
                began,
                ended,
                attributes,
                failed,
            )
        )
    chat = facts.get("chat")
    max_tokens, temperature, top_p, stream = chat if chat else (None, None, None, None)
    attempts = facts.get("attempts") or ()
    for count, attempt in enumerate(attempts, 1):
        span_id, began, ended, attempt_error, system, model = attempt[:6]
        served_entity, model_name, model_version, base_url = attempt[6:10]
        last = count == len(attempts)
        response_model = facts.get("response_model") if last else None
        client_attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": system,
            "gen_ai.request.model": model,
            "gen_ai.response.model": response_model or model,
            "gen_ai.request.max_tokens": max_tokens,
            "gen_ai.request.temperature": temperature,
            "gen_ai.request.top_p": top_p,
            "gen_ai.usage.input_tokens": facts.get("input_tokens") if last else None,
            "gen_ai.usage.output_tokens": facts.get("output_tokens") if last else None,
            "bastion.request_id": request_id,
            "bastion.endpoint": endpoint,
            "bastion.served_entity": served_entity,
            "bastion.model_name": model_name,
            "bastion.model_version": model_version,
            "bastion.stream": stream,
            "bastion.attempt": count,
            "server.address": base_url,
        }
        spans.append(
            _span(
                facts,
                span_id,
                root,
                f"chat {model}",
                "CLIENT",
                began,
                ended,
                client_attributes,
                attempt_error or (error if last else None),
            )
        )
    return spans


def _values(span: Mapping[str, Any], resource: Mapping[str, str]) -> tuple[Any, ...]:
    """A span's row, in the order of :data:`COLUMNS`."""
    start, end = span["start"], span["end"]
    return (
        span["trace_id"],
        span["span_id"],
        span["parent_span_id"],
        span["name"],
        span["kind"],
        # Epoch microseconds: the column's timestamp as it is stored.
        int(start * 1_000_000),
        int(end * 1_000_000),
        (end - start) * 1000,
        span["status_code"],
        span["status_message"],
        {k: str(v) for k, v in span["attributes"].items() if v is not None},
        resource,
        span.get("request_id"),
        span.get("endpoint_name"),
        resource.get("service.name"),
    )


def _record_values(record: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of one logged trace record, each in the order of :data:`COLUMNS`."""
    facts = record[FACTS]
    if not isinstance(facts, Mapping) or facts.get("span_id") != record.get("span_id"):
        raise ValueError("the facts of a trace record must name its root span_id")
    resource = facts.get("resource") or {}
    return [_values(span, resource) for span in spans_of(facts)]


@dataclass(frozen=True)
class SpanExpander:
    """How the table writer expands ``system.tracing.spans`` log records: one that holds a
    request's facts (in :data:`FACTS`) becomes the request's span rows."""

    field: str = FACTS

    def rows(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [dict(zip(COLUMNS, values, strict=True)) for values in _record_values(record)]

    def table(self, records: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
        """Every record's rows as one table, built column by column (no row dicts: about a
        third cheaper than :meth:`rows` and a conversion of the rows)."""
        if tuple(schema.names) != COLUMNS:
            raise ValueError(f"the spans table's columns are {COLUMNS}, not {schema.names}")
        values = [row for record in records for row in _record_values(record)]
        columns = list(zip(*values, strict=True)) if values else [()] * len(COLUMNS)
        arrays = []
        for column, field in zip(columns, schema, strict=True):
            array = pa.array(column, field.type)
            if not field.nullable and array.null_count:
                raise ValueError(f"column {field.name!r} is not nullable")
            arrays.append(array)
        return pa.Table.from_arrays(arrays, schema=schema)
