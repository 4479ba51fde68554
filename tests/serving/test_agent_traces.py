"""Spans from inside an MLflow pyfunc agent join the gateway's trace in system.tracing.spans.

Real pieces end to end: the server, a pyfunc worker process loading a saved ResponsesAgent,
MLflow's own OTLP/HTTP protobuf exporter posting back to Bastion, the official OpenAI SDK as
the client, and the governed SQL engine joining payload rows to spans.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow_models import save_agent
from openai import OpenAI

from bastion.bootstrap import initialize
from bastion.client import BastionClient
from bastion.observability.tracing import SPANS
from bastion.platform import Platform
from bastion.query import QueryEngine
from bastion.serving.control.agent_traces import AGENT_PRINCIPAL
from conftest import ADMIN_TOKEN, RunningServer, ServerThread, free_port, make_settings

mlflow = pytest.importorskip("mlflow")

AGENT = textwrap.dedent(
    """
    import mlflow
    from mlflow.pyfunc import ResponsesAgent
    from mlflow.types.responses import ResponsesAgentResponse


    class Shrine(ResponsesAgent):
        def predict(self, request):
            with mlflow.start_span("retrieve") as span:
                span.set_attribute("docs", 2)
                hours = "9:00-17:00"
            return ResponsesAgentResponse(
                output=[self.create_text_output_item(text=f"Open {hours}", id="msg-1")]
            )


    mlflow.models.set_model(Shrine())
    """
)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningServer]:
    settings = make_settings(
        tmp_path / "home", f"sqlite:///{tmp_path / 'meta.db'}", port=free_port()
    )
    platform = Platform(settings)
    initialize(platform)
    with ServerThread(platform, port=settings.port) as url:
        yield RunningServer(url, platform)
    platform.close()


def _deploy(server: RunningServer, model_dir: Path) -> None:
    with BastionClient(server.url, server.admin_token) as client:
        source = client.stage(model_dir)  # the model folder, uploaded as a user would
    with server.admin() as admin:
        model = {"catalog_name": "main", "schema_name": "default", "name": "shrine"}
        assert admin.post("/api/2.1/unity-catalog/models", json=model).status_code == 200
        version = admin.post(
            "/api/2.1/unity-catalog/models/versions",
            json={**{k: v for k, v in model.items() if k != "name"}, "model_name": "shrine"}
            | {"source": source},
        )
        assert version.status_code == 200, version.text
        entity = {"name": "v1", "entity_name": "main.default.shrine", "entity_version": "1"}
        reply = admin.post(
            "/api/2.0/serving-endpoints",
            json={"name": "shrine", "config": {"served_entities": [entity]}},
        )
        assert reply.status_code == 200, reply.text
        deadline = time.monotonic() + 180
        while admin.get("/api/2.0/serving-endpoints/shrine").json()["state"]["ready"] != "READY":
            assert time.monotonic() < deadline, "the pyfunc worker did not become ready"
            time.sleep(0.5)


def _spans_of(platform: Platform, trace_id: str, want: int) -> list[dict[str, Any]]:
    """The trace's spans, waiting for the agent's export (every 500 ms) to arrive."""
    engine = QueryEngine(platform)
    admin = platform.identity_cache.caller(platform.identity.find("admin").id)  # type: ignore[union-attr]
    deadline = time.monotonic() + 60
    while True:
        platform.writer.flush()
        rows = engine.execute(
            admin,
            f"SELECT * FROM {SPANS.full_name} WHERE trace_id = :t ORDER BY start_time",
            {"t": trace_id},
        ).rows
        if len(rows) >= want or time.monotonic() > deadline:
            for row in rows:  # map columns come back as (key, value) pairs
                row["attributes"] = dict(row["attributes"] or [])
            return rows
        time.sleep(0.3)


def test_agent_spans_join_the_gateway_trace(running: RunningServer, tmp_path: Path) -> None:
    model_dir = save_agent(AGENT, tmp_path / "shrine_model")
    _deploy(running, model_dir)

    client = OpenAI(base_url=f"{running.url}/serving-endpoints", api_key=ADMIN_TOKEN)
    raw = client.chat.completions.with_raw_response.create(
        model="shrine", messages=[{"role": "user", "content": "When is it open?"}]
    )
    assert raw.parse().choices[0].message.content == "Open 9:00-17:00"
    request_id = raw.headers["x-request-id"]

    platform = running.platform
    engine = QueryEngine(platform)
    admin = platform.identity_cache.caller(platform.identity.find("admin").id)  # type: ignore[union-attr]
    platform.writer.flush()
    payload = engine.execute(
        admin,
        "SELECT trace_id FROM main.default.shrine_payload WHERE request_id = :r",
        {"r": request_id},
    ).rows
    assert len(payload) == 1 and payload[0]["trace_id"]
    trace_id = payload[0]["trace_id"]

    spans = {s["name"]: s for s in _spans_of(platform, trace_id, want=7)}
    client_span = next(s for s in spans.values() if s["kind"] == "CLIENT")
    assert client_span["attributes"]["gen_ai.system"] == "mlflow.pyfunc"
    predict, retrieve = spans["predict"], spans["retrieve"]
    # The agent's spans hang under the gateway's CLIENT span, in the same trace.
    assert predict["parent_span_id"] == client_span["span_id"]
    assert retrieve["parent_span_id"] == predict["span_id"]
    assert predict["attributes"]["mlflow.spanType"] == '"AGENT"'
    assert retrieve["attributes"]["docs"] == "2"
    assert predict["service_name"] == "main.default.shrine/1"
    assert predict["attributes"]["bastion.ingested_by"] == AGENT_PRINCIPAL
    assert client_span["start_time"] <= predict["start_time"]
    assert predict["end_time"] <= client_span["end_time"]

    # One query joins the request's payload row to its whole trace, agent spans included.
    joined = engine.execute(
        admin,
        "SELECT s.name FROM main.default.shrine_payload p "
        "JOIN system.tracing.spans s ON s.trace_id = p.trace_id "
        "WHERE p.request_id = :r ORDER BY s.start_time",
        {"r": request_id},
    ).rows
    assert {"predict", "retrieve", "authorize"} <= {r["name"] for r in joined}
