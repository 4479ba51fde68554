"""Request traces: the span tree in ``system.tracing.spans``, joined to payload rows by trace_id."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from deltalake import DeltaTable

from bastion.bootstrap import initialize
from bastion.errors import InvalidRequest
from bastion.identity.model import Caller, PrincipalKind
from bastion.observability.exchange import Attempt, Check, Exchange
from bastion.observability.spans import FACTS, SpanExpander
from bastion.observability.tracing import (
    SPANS,
    Tracer,
    ensure_tracing_table,
    ingest_spans,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)
from bastion.platform import Platform
from bastion.serving.control.routing import Upstream
from bastion.serving.protocols import ChatRequest, ClientApi
from bastion.tables import wal
from bastion.tables.writer import DurableWriter, TableSpec
from bastion.tables.writer_convert import records_to_arrow
from conftest import RunningServer, ServerThread, make_settings
from upstream_stub import StubServer, deploy_stub_model, start_stub


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Platform]:
    platform = Platform(make_settings(tmp_path / "home", f"sqlite:///{tmp_path / 'meta.db'}"))
    initialize(platform)
    yield platform
    platform.close()


def _spans(platform: Platform) -> list[dict[str, Any]]:
    platform.writer.flush()
    uri = platform.table_storage.location(SPANS.full_name)
    rows: list[dict[str, Any]] = DeltaTable(str(uri)).to_pyarrow_table().to_pylist()
    for row in rows:
        row["attributes"] = dict(row["attributes"] or [])
        row["resource"] = dict(row["resource"] or [])
    return rows


def _record(platform: Platform, exchange: Exchange, **options: Any) -> None:
    tracer = Tracer(platform, **options)
    tracer.record(exchange)
    tracer.flush()
    tracer.close()


def _upstream(name: str = "v1", model: str = "gpt-stub") -> Upstream:
    return Upstream(
        entity_name="main.default.helpdesk_model",
        served_entity_name=name,
        served_entity_id="e1",
        model_name="main.default.helpdesk_model",
        model_version="1",
        kind="openai",
        base_url="http://127.0.0.1:9/v1",
        upstream_model=model,
    )


def _exchange(status: int = 200, **headers: str) -> Exchange:
    """A request 50 ms long: phases end at +2, +3, +4 ms; the upstream call takes +5..+45 ms."""
    now, wall = time.perf_counter(), time.time()
    start = now - 0.050
    exchange = Exchange("req-1", ClientApi.CHAT_COMPLETIONS, start, wall - 0.050)
    exchange.headers = {"user-agent": "pytest", **headers}
    exchange.endpoint = "helpdesk"
    exchange.request = ChatRequest(
        api=ClientApi.CHAT_COMPLETIONS,
        reply_format=ClientApi.CHAT_COMPLETIONS,
        model="helpdesk",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=64,
        temperature=0.2,
    )
    exchange.entity = _upstream()
    exchange.authenticated, exchange.routed, exchange.authorized = (
        start + 0.002,
        start + 0.003,
        start + 0.004,
    )
    exchange.attempts = [Attempt(exchange.entity, new_span_id(), start + 0.005, start + 0.045)]
    exchange.status = status
    exchange.upstream_s = 0.040
    exchange.finished = now
    exchange.input_tokens, exchange.output_tokens = 7, 11
    exchange.response = {"model": "gpt-stub-2025"}
    if status >= 400:
        exchange.error = "upstream said no"
    return exchange


def test_span_tree_with_gen_ai_attributes(services: Platform) -> None:
    exchange = _exchange()
    _record(services, exchange)
    assert exchange.trace_id is not None and len(exchange.trace_id) == 32
    spans = {s["name"]: s for s in _spans(services)}
    assert sorted(spans) == [
        "authenticate",
        "authorize",
        "chat gpt-stub",
        "gateway chat/completions",
        "route",
    ]
    root, client = spans["gateway chat/completions"], spans["chat gpt-stub"]
    phases = [spans[n] for n in ("authenticate", "route", "authorize")]
    assert {s["trace_id"] for s in spans.values()} == {exchange.trace_id}
    assert root["parent_span_id"] is None and root["kind"] == "SERVER"
    assert {s["parent_span_id"] for s in [*phases, client]} == {root["span_id"]}
    assert [s["kind"] for s in phases] == ["INTERNAL"] * 3
    # The phases follow each other from the request's start; the CLIENT span is the one
    # whose id went upstream in ``traceparent``.
    assert phases[0]["start_time"] == root["start_time"]
    assert phases[0]["end_time"] == phases[1]["start_time"]
    assert phases[1]["end_time"] == phases[2]["start_time"]
    assert phases[2]["end_time"] <= client["start_time"]
    assert [round(s["duration_ms"]) for s in phases] == [2, 1, 1]
    assert client["span_id"] == exchange.attempts[0].span_id and client["kind"] == "CLIENT"
    assert root["status_code"] == client["status_code"] == "UNSET"
    assert 45 < root["duration_ms"] < 60
    assert 35 < client["duration_ms"] < 45
    assert client["end_time"] <= root["end_time"]
    assert root["attributes"]["http.response.status_code"] == "200"
    assert (
        client["attributes"].items()
        >= {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-stub",
            "gen_ai.response.model": "gpt-stub-2025",
            "gen_ai.request.max_tokens": "64",
            "gen_ai.request.temperature": "0.2",
            "gen_ai.usage.input_tokens": "7",
            "gen_ai.usage.output_tokens": "11",
            "bastion.request_id": "req-1",
            "bastion.endpoint": "helpdesk",
            "bastion.served_entity": "v1",
            "bastion.attempt": "1",
        }.items()
    )
    assert all(s["request_id"] == "req-1" for s in spans.values())
    assert root["service_name"] == "bastion-gateway"


def test_each_failover_attempt_is_its_own_client_span(services: Platform) -> None:
    exchange = _exchange()
    start = exchange.started
    first = Attempt(_upstream("primary", "gpt-a"), new_span_id(), start + 0.005, start + 0.015)
    first.error = "The model server answered 503: busy"
    second = Attempt(_upstream("backup", "gpt-b"), new_span_id(), start + 0.015, start + 0.045)
    exchange.attempts, exchange.entity, exchange.upstream_failures = (
        [first, second],
        second.entity,
        1,
    )
    _record(services, exchange)
    clients = sorted(
        (s for s in _spans(services) if s["kind"] == "CLIENT"), key=lambda s: s["start_time"]
    )
    assert [c["span_id"] for c in clients] == [first.span_id, second.span_id]
    assert [c["status_code"] for c in clients] == ["ERROR", "UNSET"]
    assert clients[0]["status_message"] == first.error
    assert [c["attributes"]["bastion.served_entity"] for c in clients] == ["primary", "backup"]
    assert "gen_ai.usage.output_tokens" not in clients[0]["attributes"]
    assert clients[1]["attributes"]["gen_ai.usage.output_tokens"] == "11"
    assert [round(c["duration_ms"]) for c in clients] == [10, 30]


@pytest.mark.parametrize("deferred", [True, False])
def test_incoming_traceparent_is_the_parent(services: Platform, deferred: bool) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    exchange = _exchange(traceparent=f"00-{trace_id}-{parent}-01")
    tracer = Tracer(services, deferred=deferred)
    tracer.record(exchange)
    if not deferred:  # the spans are in the writer's log already
        services.writer.flush()
        assert len(_spans(services)) == 5
    tracer.close()
    assert exchange.trace_id == trace_id
    root = next(s for s in _spans(services) if s["kind"] == "SERVER")
    assert (root["trace_id"], root["parent_span_id"]) == (trace_id, parent)


@pytest.mark.parametrize(
    "header",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "garbage",
        "",
    ],
)
def test_invalid_traceparent_is_ignored(header: str) -> None:
    assert parse_traceparent(header) is None


def test_ids_are_w3c_shaped() -> None:
    assert len(new_trace_id()) == 32 and len(new_span_id()) == 16
    assert new_trace_id() != new_trace_id()


def test_failed_request_marks_spans_as_errors(services: Platform) -> None:
    exchange = _exchange(status=502)
    _record(services, exchange)
    spans = {s["name"]: s for s in _spans(services)}
    root, client = spans["gateway chat/completions"], spans["chat gpt-stub"]
    assert root["status_code"] == client["status_code"] == "ERROR"
    assert root["status_message"] == "upstream said no"
    assert root["attributes"]["http.response.status_code"] == "502"
    assert {spans[n]["status_code"] for n in ("authenticate", "route", "authorize")} == {"UNSET"}


def test_request_refused_at_a_phase_ends_there_without_client_span(services: Platform) -> None:
    exchange = _exchange(status=403)
    exchange.entity, exchange.attempts, exchange.authorized = None, [], 0.0
    _record(services, exchange)
    spans = {s["name"]: s for s in _spans(services)}
    assert sorted(spans) == ["authenticate", "authorize", "gateway chat/completions", "route"]
    assert spans["authorize"]["status_code"] == "ERROR"
    assert spans["authorize"]["end_time"] == spans["gateway chat/completions"]["end_time"]
    assert spans["route"]["status_code"] == "UNSET"


def test_one_compact_record_per_request_expanded_alike_wherever_committed(
    services: Platform, tmp_path: Path
) -> None:
    """The server process logs one record of a request's facts, not its five span rows; the
    writer expands it when it commits. A helper process (a spawned interpreter, as servers
    commit) gets the same rows from it, span ids included, and a record logged twice (a
    replay) is committed once."""
    exchange = _exchange()
    tracer = Tracer(services)
    tracer.record(exchange)
    tracer.flush()
    tracer.close()
    directory = services.writer.wal_dir / "tables" / SPANS.full_name
    logged = [
        record
        for seq in wal.list_segments(directory)
        for record in wal.read_segment(wal.segment_path(directory, seq)).records
    ]
    assert len(logged) == 1 and sorted(logged[0]) == ["span_id", "trace"]
    assert logged[0]["trace"]["trace_id"] == exchange.trace_id
    here = sorted(_spans(services), key=lambda s: s["span_id"])
    assert len(here) == 5 and here[0]["trace_id"] == exchange.trace_id

    spec = TableSpec(
        SPANS.full_name, str(tmp_path / "spans"), SPANS.schema, SPANS.key, expander=SPANS.expander
    )
    with DurableWriter(tmp_path / "wal", commit_process=True) as writer:
        writer.register(spec)
        writer.append_many(SPANS.full_name, [logged[0], logged[0]])
        assert writer.flush() == 5
        assert writer.stats().deduplicated == 1
    there = DeltaTable(spec.uri).to_pyarrow_table().to_pylist()
    for row in there:
        row["attributes"] = dict(row["attributes"] or [])
        row["resource"] = dict(row["resource"] or [])
    assert sorted(there, key=lambda s: s["span_id"]) == here


def test_span_columns_built_at_once_equal_the_rows_one_by_one(services: Platform) -> None:
    """The writer's fast path (columns straight from the facts) and its record-by-record path
    (rows, then the generic conversion) give the same table: plain, failed, refused at a
    phase, with governance checks, after a failover."""
    tracer = Tracer(services, deferred=False)
    exchanges = [_exchange(), _exchange(status=502), _exchange(status=403)]
    refused = exchanges[2]
    refused.entity, refused.attempts, refused.authorized = None, [], 0.0
    checked = exchanges[0]
    checked.checks = [
        Check("rate_limit", checked.started, checked.started + 0.001, {"a": "b"}, None),
        Check("guardrails input", checked.started, checked.started, {"x": None}, "blocked"),
    ]
    failover = _exchange()
    failover.attempts.insert(0, Attempt(_upstream("v0"), new_span_id(), failover.started, 0.0))
    failover.attempts[0].error = "connection refused"
    records = []
    for exchange in [*exchanges, failover]:
        exchange.continue_trace()
        facts = orjson.loads(orjson.dumps(tracer.facts(exchange)))  # as the log holds them
        records.append({"span_id": facts["span_id"], FACTS: facts})
    tracer.close()
    expander = SpanExpander()
    at_once = expander.table(records, SPANS.schema)
    one_by_one, bad = records_to_arrow(
        [row for record in records for row in expander.rows(record)], SPANS.schema
    )
    assert not bad and at_once.num_rows == one_by_one.num_rows == 5 + 5 + 4 + 6 + 2
    assert at_once.equals(one_by_one)


def _agent_caller() -> Caller:
    return Caller(1, PrincipalKind.USER, "agent@example.com", "Agent", frozenset(), frozenset())


def test_ingest_agent_spans_joins_the_request_trace(services: Platform) -> None:
    exchange = _exchange()
    _record(services, exchange)
    root = next(s for s in _spans(services) if s["kind"] == "SERVER")
    start = time.time_ns()
    export = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "agent"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": exchange.trace_id,
                                "spanId": "1111111111111111",
                                "parentSpanId": root["span_id"],
                                "name": "retriever",
                                "kind": 1,
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(start + 2_000_000),
                                "attributes": [
                                    {"key": "docs", "value": {"intValue": "3"}},
                                    {"key": "bastion.request_id", "value": {"stringValue": "r"}},
                                ],
                                "status": {"code": 2, "message": "partial"},
                            }
                        ]
                    }
                ],
            }
        ]
    }
    assert ingest_spans(services, _agent_caller(), [export]) == 1
    flat = {
        "traceId": exchange.trace_id,
        "spanId": "2222222222222222",
        "parentSpanId": "1111111111111111",
        "name": "tool call",
        "kind": "SPAN_KIND_CLIENT",
        "startTimeUnixNano": start,
        "endTimeUnixNano": start + 1_000_000,
        "attributes": {"tool": "search"},
    }
    assert ingest_spans(services, None, [flat], resource={"service.name": "agent-2"}) == 1
    spans = {s["name"]: s for s in _spans(services) if s["trace_id"] == exchange.trace_id}
    assert len(spans) == 7
    retriever, tool = spans["retriever"], spans["tool call"]
    assert retriever["parent_span_id"] == root["span_id"] and retriever["kind"] == "INTERNAL"
    assert retriever["status_code"] == "ERROR" and retriever["status_message"] == "partial"
    assert retriever["attributes"]["docs"] == "3"
    assert retriever["attributes"]["bastion.ingested_by"] == "agent@example.com"
    assert retriever["request_id"] == "r" and retriever["service_name"] == "agent"
    assert retriever["duration_ms"] == pytest.approx(2.0)
    assert tool["kind"] == "CLIENT" and tool["service_name"] == "agent-2"
    assert tool["attributes"]["tool"] == "search"


@pytest.mark.parametrize(
    "change",
    [
        {"traceId": "xyz"},
        {"spanId": "0000000000000000"},
        {"parentSpanId": "short"},
        {"name": ""},
        {"kind": "SIDEWAYS"},
        {"startTimeUnixNano": "soon"},
        {"endTimeUnixNano": 1},
        {"status": {"code": 9}},
        {"attributes": "x"},
    ],
)
def test_ingest_rejects_bad_spans(services: Platform, change: dict[str, Any]) -> None:
    span = {
        "traceId": new_trace_id(),
        "spanId": new_span_id(),
        "name": "ok",
        "startTimeUnixNano": 10**18,
        "endTimeUnixNano": 10**18 + 1,
    } | change
    good = {**span, **{"spanId": new_span_id(), "name": "good", "traceId": new_trace_id()}}
    good.pop("parentSpanId", None)
    ensure_tracing_table(services)
    with pytest.raises(InvalidRequest):
        ingest_spans(services, None, [good, span])  # all or none
    assert ingest_spans(services, None, []) == 0
    assert _spans(services) == []


# -- OTLP export --------------------------------------------------------------------------


class _Collector(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.got = threading.Event()


class _CollectorHandler(BaseHTTPRequestHandler):
    server: _Collector

    def log_message(self, *_args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.posts.append((self.path, json.loads(body)))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        self.server.got.set()


def test_spans_are_exported_over_otlp_http(services: Platform) -> None:
    collector = _Collector()
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{collector.server_address[1]}"
        tracer = Tracer(services, otlp_endpoint=url)
        assert tracer.exporter is not None
        exchange = _exchange(status=502)
        tracer.record(exchange)
        tracer.close()
        assert collector.got.wait(10)
    finally:
        collector.shutdown()
        collector.server_close()
    path, body = collector.posts[0]
    assert path == "/v1/traces"
    resource_spans = body["resourceSpans"][0]
    resource = {a["key"]: a["value"] for a in resource_spans["resource"]["attributes"]}
    assert resource["service.name"] == {"stringValue": "bastion-gateway"}
    spans = {s["kind"]: s for s in resource_spans["scopeSpans"][0]["spans"]}
    assert set(spans) == {1, 2, 3}  # INTERNAL, SERVER, CLIENT
    client = spans[3]
    assert client["traceId"] == exchange.trace_id and client["parentSpanId"] == spans[2]["spanId"]
    assert client["status"] == {"code": 2, "message": "upstream said no"}
    attributes = {a["key"]: a["value"] for a in client["attributes"]}
    assert attributes["gen_ai.usage.output_tokens"] == {"intValue": "11"}
    assert attributes["gen_ai.request.temperature"] == {"doubleValue": 0.2}
    assert int(client["endTimeUnixNano"]) > int(client["startTimeUnixNano"])
    assert tracer.exporter.exported == 5 and tracer.exporter.dropped == 0


# -- end to end: through the gateway, joined to the payload row ----------------------------


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = start_stub("The shrine opens at 9.")
    yield server
    server.shutdown()
    server.server_close()


def test_gateway_request_trace_joins_its_payload_row(services: Platform, stub: StubServer) -> None:
    thread = ServerThread(services)  # create_app wires the tracer into the gateway's log
    with thread as url:
        server = RunningServer(url, services)
        deploy_stub_model(server, stub)
        trace_id = "0af7651916cd43dd8448eb211c80319c"
        with server.admin() as admin:
            reply = admin.post(
                "/serving-endpoints/helpdesk/invocations",
                json={"messages": [{"role": "user", "content": "When?"}], "max_tokens": 20},
                headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
            )
            assert reply.status_code == 200, reply.text
            request_id = reply.headers["x-request-id"]
    services.writer.flush()  # the server's shutdown drained its tracer into the writer
    payload = services.table_storage.location("main.default.helpdesk_payload")
    rows = DeltaTable(str(payload)).to_pyarrow_table(columns=["request_id", "trace_id"])
    assert rows.to_pylist() == [{"request_id": request_id, "trace_id": trace_id}]
    spans = [s for s in _spans(services) if s["trace_id"] == trace_id]
    assert len(spans) == 5 and {s["request_id"] for s in spans} == {request_id}
    client = next(s for s in spans if s["kind"] == "CLIENT")
    # The upstream was called inside the trace, as a child of the CLIENT span.
    assert stub.seen_traceparent == [f"00-{trace_id}-{client['span_id']}-01"]
    assert client["attributes"]["gen_ai.request.max_tokens"] == "20"
    assert int(client["attributes"]["gen_ai.usage.output_tokens"]) > 0
    assert httpx.URL(client["attributes"]["server.address"]).host == "127.0.0.1"


def test_agents_post_spans_over_http_users_may_not(server) -> None:  # type: ignore[no-untyped-def]
    from conftest import create_user

    span = {
        "traceId": "ab" * 16,
        "spanId": "cd" * 8,
        "name": "agent step",
        "kind": 1,
        "startTimeUnixNano": 1_700_000_000_000_000_000,
        "endTimeUnixNano": 1_700_000_000_500_000_000,
        "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}],
    }
    with server.admin() as admin:
        sp = admin.post(
            "/api/2.0/preview/scim/v2/ServicePrincipals", json={"displayName": "agent"}
        ).json()
    record = server.platform.identity.find(sp["applicationId"])
    token, _ = server.platform.identity.create_token(
        record.id, kind="pat", prefix="bstp_", lifetime_s=600
    )
    with server.client(token) as agent:
        reply = agent.post("/api/2.0/bastion/traces", json=[span])
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"accepted": 1}
        assert agent.post("/api/2.0/bastion/traces", json=[{"spanId": "zz"}]).status_code == 400
    _, user = create_user(server, "nosy@example.com")
    with server.client(user) as nosy:
        assert nosy.post("/api/2.0/bastion/traces", json=[span]).status_code == 403


def test_otlp_protobuf_export_is_accepted(server) -> None:  # type: ignore[no-untyped-def]
    """What OpenTelemetry SDKs (and MLflow) send by default: OTLP/HTTP protobuf."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    trace_id = new_trace_id()
    span = Span(
        trace_id=bytes.fromhex(trace_id),
        span_id=bytes.fromhex("ab" * 8),
        parent_span_id=bytes.fromhex("cd" * 8),
        name="tool: search",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_250_000_000,
        attributes=[
            KeyValue(key="hits", value=AnyValue(int_value=4)),
            KeyValue(key="ok", value=AnyValue(bool_value=True)),
        ],
    )
    span.status.code = 2
    span.status.message = "partial"
    resource = ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])
    resource.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="kyoto-agent"))
    )
    body = ExportTraceServiceRequest(resource_spans=[resource]).SerializeToString()
    with server.admin() as admin:
        for path in ("/api/2.0/bastion/traces", "/api/2.0/bastion/v1/traces"):
            reply = admin.post(
                path, content=body, headers={"content-type": "application/x-protobuf"}
            )
            assert reply.status_code == 200, reply.text
            assert reply.headers["content-type"] == "application/x-protobuf"
        bad = admin.post(
            "/api/2.0/bastion/traces",
            content=b"\xff\x00garbage",
            headers={"content-type": "application/x-protobuf"},
        )
        assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    rows = [s for s in _spans(server.platform) if s["trace_id"] == trace_id]
    assert len(rows) == 1  # the same span twice: the table's key collapses it
    row = rows[0]
    assert (row["span_id"], row["parent_span_id"], row["kind"]) == ("ab" * 8, "cd" * 8, "CLIENT")
    assert row["status_code"] == "ERROR" and row["status_message"] == "partial"
    assert row["attributes"]["hits"] == "4" and row["attributes"]["ok"] == "true"
    assert row["service_name"] == "kyoto-agent" and row["duration_ms"] == pytest.approx(250)
