"""The worker supervisor against real processes: start, health-check, restart after SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bastion.serving.workers import WorkerSpec, WorkerState, WorkerSupervisor

STUB = str(Path(__file__).parent.parent / "upstream_stub.py")


def stub_spec(key: str = "stub/1", reply: str = "hello from the stub") -> WorkerSpec:
    return WorkerSpec(
        key=key,
        command=(sys.executable, STUB, "--port", "{port}", "--reply", reply),
        upstream_model="stub",
        startup_timeout_s=20,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[WorkerSupervisor]:
    sup = WorkerSupervisor(tmp_path / "logs", check_interval_s=0.1, stop_grace_s=0.0)
    sup.start()
    yield sup
    sup.stop_all()


def ask(base_url: str) -> str:
    response = httpx.post(
        f"{base_url}/chat/completions",
        json={"model": "stub", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def test_worker_restarted_after_sigkill(supervisor: WorkerSupervisor) -> None:
    worker = supervisor.ensure(stub_spec())
    wait_for(lambda: worker.state == WorkerState.READY)
    assert ask(worker.base_url) == "hello from the stub"
    first_pid, port = worker.pid, worker.port
    assert first_pid is not None
    generation = supervisor.generation

    os.kill(first_pid, signal.SIGKILL)

    wait_for(lambda: worker.restarts == 1 and worker.state == WorkerState.READY)
    assert worker.pid != first_pid
    assert worker.port == port  # same base URL: plans already handed out stay valid
    assert supervisor.generation > generation
    assert ask(worker.base_url) == "hello from the stub"
    assert "starting on port" in worker.log_path.read_text()


def test_ensure_is_idempotent_and_stop_all_kills(supervisor: WorkerSupervisor) -> None:
    worker = supervisor.ensure(stub_spec())
    assert supervisor.ensure(stub_spec()) is worker
    wait_for(lambda: worker.state == WorkerState.READY)
    process = worker.process
    assert process is not None
    supervisor.stop_all()
    assert process.poll() is not None
    assert supervisor.workers() == []


def test_a_worker_that_cannot_start_ends_failed(tmp_path: Path) -> None:
    sup = WorkerSupervisor(
        tmp_path / "logs", check_interval_s=0.05, max_failed_starts=2, max_backoff_s=0.1
    )
    sup.start()
    try:
        spec = WorkerSpec(
            key="broken/1",
            command=(sys.executable, "-c", "import sys; print('no model'); sys.exit(3)"),
            upstream_model="broken",
        )
        worker = sup.ensure(spec)
        wait_for(lambda: worker.state == WorkerState.FAILED)
        assert worker.last_error is not None and "code 3" in worker.last_error
        assert "no model" in worker.log_path.read_text()
    finally:
        sup.stop_all()


def test_unwanted_workers_are_stopped_after_grace(supervisor: WorkerSupervisor) -> None:
    keep = supervisor.ensure(stub_spec("keep/1"))
    drop = supervisor.ensure(stub_spec("drop/1"))
    wait_for(lambda: keep.state == drop.state == WorkerState.READY)
    process = drop.process
    assert process is not None
    supervisor.retain({"keep/1"})
    wait_for(lambda: supervisor.get("drop/1") is None)
    assert process.poll() is not None
    assert keep.state == WorkerState.READY
