"""``kill -9`` of ``bastion up`` takes its app processes down within seconds; the restarted
server runs exactly one process per app and never kills a process that merely has the pid
an app once had (issue 18, for apps; ``tests/serving/test_process_tree.py`` is the model
workers' version)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bastion.processes.proc import command_line, group_members, start_ticks
from conftest import free_port

TOKEN = "bstp_" + "8" * 40


def _up(home: Path, port: int) -> subprocess.Popen[bytes]:
    """``bastion up`` without a model: its one app is the built-in dashboard (Streamlit)."""
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_ADMIN_TOKEN": TOKEN}
    env.pop("BASTION_DATABASE_URL", None)
    env.pop("BASTION_DASHBOARD", None)
    return subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "up", "--port", str(port), "--no-default-model"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _apps_running(url: str, server: subprocess.Popen[bytes]) -> list[dict[str, object]]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            reply = httpx.get(
                f"{url}/api/2.0/bastion/status",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=10,
            )
            apps = [p for p in reply.json()["processes"] if p["kind"] == "app"]
        except (httpx.HTTPError, KeyError, ValueError):
            time.sleep(0.5)
            continue
        if apps and all(p["state"] == "RUNNING" for p in apps):
            return apps
        time.sleep(0.5)
    raise AssertionError("the dashboard app did not start")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and start_ticks(pid) is not None


def _app_processes(home: Path) -> dict[int, str]:
    """Processes on this machine running an app of this home (pid → the app's name), told
    apart by identity — their working directory is the app's deployment under this home —
    not by pid; guards excluded (each app is one guard and the app under it)."""
    apps = (home / "apps").resolve()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if not cwd.is_relative_to(apps) or not _alive(pid):
            continue
        if "bastion.processes.guard" in command_line(pid):
            continue
        found[pid] = cwd.relative_to(apps).parts[0]
    return found


@pytest.mark.slow
def test_sigkill_stops_every_app_process_and_a_restart_runs_one_each(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    url = f"http://127.0.0.1:{port}"
    server = _up(home, port)
    bystander: subprocess.Popen[bytes] | None = None
    try:
        (app,) = _apps_running(url, server)
        assert app["key"] == "dashboard"
        guard = int(app["pid"])  # type: ignore[call-overload]
        members = group_members(guard)
        running = _app_processes(home)
        assert list(running.values()) == ["dashboard"]
        assert set(running) <= set(members) and guard in members
        identities = {pid: start_ticks(pid) for pid in members}

        server.send_signal(signal.SIGKILL)
        server.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in members):
            time.sleep(0.1)
        # Gone: neither the pids (with the start times they had) nor anything of this
        # home's apps under another pid.
        assert [p for p in members if _alive(p) and start_ticks(p) == identities[p]] == []
        assert _app_processes(home) == {}

        # The crashed server's record is still there. Make it name an unrelated process
        # that has that pid now, start time included: as if the kernel had reused the pid
        # at the same tick. Only the record's random tag on the guard's command line differs.
        (record_path,) = (home / "run").glob("app-*.json")
        record = json.loads(record_path.read_text())
        assert record["pid"] == guard and record["kind"] == "app"
        bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)
        record.update(pid=bystander.pid, start_ticks=start_ticks(bystander.pid))
        record_path.write_text(json.dumps(record))

        server = _up(home, port)
        (app,) = _apps_running(url, server)
        assert bystander.poll() is None  # not killed, not signalled: it is not an app
        restarted = _app_processes(home)
        assert list(restarted.values()) == ["dashboard"]  # exactly one process per app
        assert int(app["pid"]) != guard  # type: ignore[call-overload]
        assert set(restarted) <= set(group_members(int(app["pid"])))  # type: ignore[call-overload]
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        if bystander is not None:
            bystander.kill()
            bystander.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _app_processes(home):
        time.sleep(0.1)
    assert _app_processes(home) == {}  # a clean stop leaves nothing either
