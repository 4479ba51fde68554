"""The scanner against a tiny OpenAI-compatible gateway stand-in on 127.0.0.1.

The stub answers like the gateway (``/serving-endpoints/models``, ``/chat/completions``,
``x-request-id``), records what it was sent, refuses plain requests and complies with encoded
ones, so the expected ASR is known exactly.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.errors import InvalidRequest, PermissionDenied, Unauthenticated
from bastion.redteam.models import RiskCategory
from bastion.redteam.objectives import builtin_objectives
from bastion.redteam.scan import (
    Checkpoint,
    ScanConfig,
    Scanner,
    checkpoint_path,
    plan_attacks,
    resume_scan,
    run_scan,
    split_list,
)
from bastion.redteam.scorecard import AsrSummary
from bastion.redteam.store import attack_result, result_row, results_view_sql

TOKEN = "stub-token"
REFUSAL = "I'm sorry, but I can't help with that."
COMPLIANCE = "Sure, here it is."


class StubGateway:
    """An OpenAI-compatible upstream in a thread; ``calls`` holds (headers, body) pairs."""

    def __init__(self, endpoints: tuple[str, ...] = ("target", "flaky")) -> None:
        self.endpoints = endpoints
        self.calls: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.objectives = {o.text for o in builtin_objectives()}
        self.delay = 0.0
        app = Starlette(
            routes=[
                Route("/serving-endpoints/models", self.models, methods=["GET"]),
                Route("/serving-endpoints/chat/completions", self.chat, methods=["POST"]),
            ]
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> StubGateway:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "stub gateway did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    async def models(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": {"message": "bad token"}}, status_code=401)
        data = [{"id": name, "object": "model"} for name in self.endpoints]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.calls.append((dict(request.headers), body))
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": {"message": "bad token"}}, status_code=401)
        n = int(str(body.get("client_request_id", "x:x:0")).split(":")[2])
        if body["model"] == "flaky" and n % 4 == 0:
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        prompt = body["messages"][-1]["content"]
        reply = REFUSAL if prompt in self.objectives else COMPLIANCE
        headers = {"x-request-id": uuid.uuid4().hex}
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": f"{body['model']}-v7",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}],
            },
            headers=headers,
        )


@pytest.fixture(scope="module")
def stub() -> Iterator[StubGateway]:
    with StubGateway() as gateway:
        yield gateway


def config(**overrides: Any) -> ScanConfig:
    values: dict[str, Any] = {
        "endpoint": "target",
        "risk_categories": "violence,self_harm",
        "strategies": "base64",
        "num_objectives": 3,
        "judge": "refusal",
        "concurrency": 3,
    }
    values.update(overrides)
    return ScanConfig.from_parameters(values)


class Recorder:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []

    def results(self, rows: Any) -> None:
        self.rows.extend(dict(r) for r in rows)

    def finish(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))


def test_config_parses_lists_and_rejects_bad_values() -> None:
    assert split_list("a, b,,c") == ["a", "b", "c"]
    assert split_list(["a,b", "c"]) == ["a", "b", "c"]
    cfg = config(risk_categories="Violence, hate-unfairness", strategies="easy")
    assert cfg.risk_categories == ("violence", "hate_unfairness")
    assert ScanConfig.from_parameters(cfg.to_parameters()) == cfg
    with pytest.raises(InvalidRequest, match="risk category"):
        config(risk_categories="nope")
    with pytest.raises(InvalidRequest, match="num_objectives"):
        config(num_objectives=0)
    with pytest.raises(InvalidRequest, match="judge"):
        config(judge="oracle")
    with pytest.raises(InvalidRequest, match="judge_endpoint"):
        config(judge="llm")
    with pytest.raises(InvalidRequest, match="Unknown scan parameters"):
        ScanConfig.from_parameters({"endpoint": "x", "colour": "red"})
    with pytest.raises(InvalidRequest, match="attacker"):
        plan_attacks(config(strategies="tense"))


def test_plan_is_stable_and_baseline_first() -> None:
    plan = plan_attacks(config(strategies="easy", num_objectives=2))
    assert [a.n for a in plan] == list(range(1, 17))
    assert [a.strategy.name for a in plan[:4]] == ["baseline"] * 4
    assert {a.strategy.name for a in plan} == {"baseline", "base64", "flip", "morse"}
    again = plan_attacks(config(strategies="easy", num_objectives=2))
    assert [a.key for a in again] == [a.key for a in plan]


def test_scan_tags_every_request_and_scores(stub: StubGateway, tmp_path: Path) -> None:
    sink = Recorder()
    before = len(stub.calls)
    scanner = Scanner(
        config(), host=stub.url, token=TOKEN, sink=sink, requester="alice", batch_size=4
    )
    report = scanner.run()
    sid = report.scan_id
    calls = stub.calls[before:]
    assert len(calls) == 12 == len(report.rows) == len(sink.rows)  # 2 categories × 3 × 2
    for headers, body in calls:
        assert headers["x-bastion-scan-type"] == "redteam"
        assert headers["x-bastion-scan-id"] == sid
        assert body["client_request_id"].startswith(f"redteam:{sid}:")
    cids = {body["client_request_id"] for _, body in calls}
    assert cids == {r["client_request_id"] for r in report.rows}
    row = report.rows[0]
    assert row["result_id"] == f"{sid}:1" and row["strategy"] == "baseline"
    assert row["response"] == REFUSAL and row["attack_success"] is False
    assert len(row["request_ids"]) == 1 and row["model_version"] == "target-v7"
    assert row["latency_ms"] >= 0 and row["converted_prompt"] == row["objective"]
    encoded = [r for r in report.rows if r["strategy"] == "base64"]
    assert all(r["attack_success"] is True and r["severity"] == 5 for r in encoded)
    # ASR = successes / evaluated; the record and the scorecard agree
    assert report.summary.asr == 50.0
    (record,) = sink.records
    assert record["status"] == "completed" and record["asr"] == 50.0
    assert (record["evaluated"], record["succeeded"], record["errors"]) == (12, 6, 0)
    card = json.loads(record["scorecard"])
    assert card["risk_category_summary"][0]["overall_asr"] == 50.0
    joint = {e["risk_category"]: e for e in card["joint_risk_attack_summary"]}
    assert joint["violence"]["baseline_asr"] == 0.0
    assert joint["violence"]["easy_complexity_asr"] == 100.0
    assert set(report.document) == {"scorecard", "parameters", "attack_details"}


def test_errors_count_apart_from_successes(stub: StubGateway) -> None:
    report = run_scan(
        "flaky",
        host=stub.url,
        token=TOKEN,
        risk_categories=["violence"],
        strategies=["flip"],
        num_objectives=4,
        judge="refusal",
    )
    errors = [r for r in report.rows if r["error"] is not None]
    assert [r["n"] for r in errors] == [4, 8]
    assert all(r["attack_success"] is None and "500" in r["error"] for r in errors)
    summary = report.summary
    assert (summary.total, summary.evaluated, summary.errors) == (8, 6, 2)
    assert summary.successes == 3 and summary.asr == 50.0
    assert report.record["errors"] == 2


def test_fails_fast_without_query_permission(stub: StubGateway) -> None:
    before = len(stub.calls)
    with pytest.raises(PermissionDenied, match="may not query endpoint 'secret'"):
        Scanner(config(endpoint="secret"), host=stub.url, token=TOKEN).run()
    with pytest.raises(PermissionDenied, match="'hidden' \\(the judge\\)"):
        Scanner(config(judge="llm", judge_endpoint="hidden"), host=stub.url, token=TOKEN).run()
    with pytest.raises(Unauthenticated):
        Scanner(config(), host=stub.url, token="wrong").run()
    assert len(stub.calls) == before  # nothing was attacked


class StopAfter:
    """A progress display that interrupts the scan after ``limit`` attacks."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0

    def started(self, total: int, done: int) -> None:
        self.total, self.done = total, done

    def advanced(self, row: Mapping[str, Any]) -> None:
        self.seen += 1
        if self.seen == self.limit:
            raise KeyboardInterrupt


def test_interrupted_scan_resumes_without_repeating(stub: StubGateway, tmp_path: Path) -> None:
    sink = Recorder()
    cfg = config(concurrency=1, num_objectives=4)
    scanner = Scanner(
        cfg,
        host=stub.url,
        token=TOKEN,
        sink=sink,
        checkpoint=Checkpoint(checkpoint_path(tmp_path, "scan1")),
        scan_id="scan1",
        progress=StopAfter(5),
        batch_size=2,
    )
    with pytest.raises(KeyboardInterrupt):
        scanner.run()
    assert sink.records[-1]["status"] == "interrupted"
    header, done = Checkpoint(checkpoint_path(tmp_path, "scan1")).read()
    assert header["scan_id"] == "scan1" and len(done) == 5
    finished = {r["client_request_id"] for r in done}

    before = len(stub.calls)
    progress = StopAfter(10_000)
    report = resume_scan(
        checkpoint_path(tmp_path, "scan1"),
        host=stub.url,
        token=TOKEN,
        sink=sink,
        progress=progress,
    )
    resumed = {body["client_request_id"] for _, body in stub.calls[before:]}
    assert len(resumed) == 16 - 5 and not resumed & finished
    assert (progress.total, progress.done) == (16, 5)
    assert report.status == "completed" and len(report.rows) == 16
    assert [r["n"] for r in report.rows] == list(range(1, 17))
    assert report.summary.asr == 50.0
    assert len({r["result_id"] for r in sink.rows}) == len(sink.rows) == 16
    _, rows = Checkpoint(checkpoint_path(tmp_path, "scan1")).read()
    assert len(rows) == 16


def test_rows_round_trip_to_attack_results(stub: StubGateway) -> None:
    report = run_scan("target", host=stub.url, token=TOKEN, **_small())
    for row, result in zip(report.rows, report.results, strict=True):
        assert attack_result(row) == result
        again = result_row(
            result,
            scan_id=report.scan_id,
            n=row["n"],
            endpoint="target",
            client_request_id=row["client_request_id"],
            request_ids=row["request_ids"],
            latency_ms=row["latency_ms"],
            model_version=row["model_version"],
        )
        assert {k: v for k, v in again.items() if k != "created_at"} == {
            k: v for k, v in row.items() if k != "created_at"
        }
    assert AsrSummary.of(report.results).asr == report.record["asr"]


def _small() -> dict[str, Any]:
    return {
        "risk_categories": [RiskCategory.SEXUAL.value],
        "strategies": ["rot13"],
        "num_objectives": 2,
        "judge": "refusal",
    }


def test_view_sql_without_payload_tables_is_typed() -> None:
    sql = results_view_sql([])
    assert "CAST(NULL AS STRING) AS p_client_request_id" in sql
    assert "`system`.`redteam`.`results`" in sql
    sql = results_view_sql(["main.default.smollm2_payload"])
    assert "FROM `main`.`default`.`smollm2_payload` WHERE scan_type = 'redteam'" in sql
