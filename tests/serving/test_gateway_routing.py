"""Traffic splits, fallback with worker restarts, and alias moves — through the real gateway."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from conftest import RunningServer
from upstream_stub import StubServer, start_stub
from upstream_stub import external_entity as external

UC = "/api/2.1/unity-catalog"


def ask(client: httpx.Client, endpoint: str) -> str:
    reply = client.post(
        f"/serving-endpoints/{endpoint}/invocations",
        json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 8},
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["choices"][0]["message"]["content"])


@pytest.fixture
def stubs() -> Iterator[tuple[StubServer, StubServer]]:
    a, b = start_stub("answer from A"), start_stub("answer from B")
    yield a, b
    for stub in (a, b):
        stub.shutdown()
        stub.server_close()


def test_traffic_split_90_10_over_1000_requests(
    server: RunningServer, stubs: tuple[StubServer, StubServer]
) -> None:
    a, b = stubs
    config = {
        "served_entities": [external(a, "a"), external(b, "b")],
        "traffic_config": {
            "routes": [
                {"served_model_name": "a", "traffic_percentage": 90},
                {"served_model_name": "b", "traffic_percentage": 10},
            ]
        },
    }
    with server.admin() as admin:
        created = admin.post("/api/2.0/serving-endpoints", json={"name": "split", "config": config})
        assert created.status_code == 200, created.text
        counts = Counter(ask(admin, "split") for _ in range(1000))
    # 900 expected, standard deviation sqrt(1000 * 0.9 * 0.1) ≈ 9.5: allow five of them.
    assert 852 <= counts["answer from A"] <= 948, counts
    assert counts["answer from A"] + counts["answer from B"] == 1000


def test_bad_traffic_configs_are_refused(
    server: RunningServer, stubs: tuple[StubServer, StubServer]
) -> None:
    a, b = stubs
    bad = {
        "served_entities": [external(a, "a"), external(b, "b")],
        "traffic_config": {
            "routes": [
                {"served_model_name": "a", "traffic_percentage": 70},
                {"served_model_name": "b", "traffic_percentage": 20},
            ]
        },
    }
    with server.admin() as admin:
        reply = admin.post("/api/2.0/serving-endpoints", json={"name": "bad", "config": bad})
        assert reply.status_code == 400
        assert reply.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "100" in reply.json()["message"]


def test_alias_move_changes_the_answer_without_restart(
    server: RunningServer, stubs: tuple[StubServer, StubServer]
) -> None:
    a, b = stubs
    with server.admin() as admin:
        model = {"catalog_name": "main", "schema_name": "default", "name": "agent"}
        assert admin.post(f"{UC}/models", json=model).status_code == 200
        for stub in (a, b):
            version = admin.post(
                f"{UC}/models/versions",
                json={
                    "catalog_name": "main",
                    "schema_name": "default",
                    "model_name": "agent",
                    "external_model": external(stub, "x")["external_model"],
                },
            )
            assert version.status_code == 200, version.text
        alias = f"{UC}/models/main.default.agent/aliases/champion"
        assert admin.put(alias, json={"version_num": 1}).status_code == 200
        config = {
            "served_entities": [
                {
                    "name": "champ",
                    "entity_name": "main.default.agent",
                    "entity_version": "@champion",
                }
            ]
        }
        created = admin.post(
            "/api/2.0/serving-endpoints", json={"name": "aliased", "config": config}
        )
        assert created.status_code == 200, created.text
        assert ask(admin, "aliased") == "answer from A"
        assert admin.put(alias, json={"version_num": 2}).status_code == 200
        assert ask(admin, "aliased") == "answer from B"


def _worker_pid(server: RunningServer) -> int:
    from bastion.serving.control.service import serving_of

    workers = serving_of(server.platform).supervisor.workers()
    pids = [w.pid for w in workers if w.pid]
    assert pids, "no worker is running"
    return int(pids[0])


def test_killing_a_worker_falls_back_and_the_worker_restarts(
    server: RunningServer, stubs: tuple[StubServer, StubServer]
) -> None:
    from bastion.serving.control.bootstrap import bootstrap_default_model

    a, _ = stubs
    bootstrap_default_model(server.platform)  # main.default.smollm2 v1, a llama.cpp worker
    config = {
        "served_entities": [
            {"name": "local", "entity_name": "main.default.smollm2", "entity_version": "1"},
            external(a, "backup"),
        ],
        "traffic_config": {
            "routes": [
                {"served_model_name": "local", "traffic_percentage": 100},
                {"served_model_name": "backup", "traffic_percentage": 0},
            ]
        },
    }
    with server.admin() as admin:
        reply = admin.post(
            "/api/2.0/serving-endpoints",
            json={
                "name": "resilient",
                "config": config,
                "ai_gateway": {"fallback_config": {"enabled": True}},
            },
        )
        assert reply.status_code == 200, reply.text
        deadline = time.monotonic() + 120
        while ask(admin, "resilient") == "answer from A":  # until the worker is up
            assert time.monotonic() < deadline, "the llama.cpp worker never served"
            time.sleep(0.5)
        first_pid = _worker_pid(server)
        os.kill(first_pid, signal.SIGKILL)
        # Requests keep succeeding: the backup answers while the worker is down.
        answers = [ask(admin, "resilient") for _ in range(5)]
        assert "answer from A" in answers
        deadline = time.monotonic() + 120
        while True:
            if ask(admin, "resilient") != "answer from A":
                break
            assert time.monotonic() < deadline, "the worker was not restarted"
            time.sleep(0.5)
        assert _worker_pid(server) != first_pid
