"""``bastion up --workers 2``: two server processes on one port, one leader, each its own
write-ahead log; a killed process is restarted and loses no acknowledged row; killing the
master takes the server processes with it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from deltalake import DeltaTable

from bastion.processes.proc import start_ticks
from conftest import free_port
from upstream_stub import external_entity, start_stub

TOKEN = "bstp_" + "7" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _up(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BASTION_HOME": str(home),
        "BASTION_ADMIN_TOKEN": TOKEN,
        "BASTION_EGRESS_ALLOW_HOSTS": '["127.0.0.1"]',
        "BASTION_WRITER_FLUSH_INTERVAL_S": "3600",
        "BASTION_WRITER_FLUSH_ROWS": "1000000",
    }
    env.pop("BASTION_DATABASE_URL", None)
    env.pop("BASTION_REDIS_URL", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bastion.cli.main",
                "up",
                "--port",
                str(port),
                "--no-default-model",
                "--workers",
                "2",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _children(master: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True
    ).stdout
    return [int(pid) for pid in out.split()]


def _servers(url: str, want: int, deadline: float) -> dict[int, dict[str, float]]:
    """Ask /metrics until ``want`` distinct server processes have answered; by pid."""
    seen: dict[int, dict[str, float]] = {}
    while len(seen) < want:
        assert time.monotonic() < deadline, f"only saw {sorted(seen)}"
        with httpx.Client(headers=AUTH, timeout=10) as client:  # a new connection each time
            text = client.get(f"{url}/metrics").text
        found = re.search(r"^bastion_server_pid (\S+)", text, re.M)
        assert found is not None, text[:2000]
        pid = int(float(found.group(1)))
        values = {
            name: float(value)
            for name, value in re.findall(r"^(bastion_leader|bastion_wal_slot) (\S+)", text, re.M)
        }
        seen[pid] = values
    return seen


def test_two_server_processes_share_one_port_and_lose_nothing(tmp_path: Path) -> None:
    home, port, log = tmp_path / "home", free_port(), tmp_path / "up.log"
    url = f"http://127.0.0.1:{port}"
    stub = start_stub("ok")
    master = _up(home, port, log)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            assert master.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        created = httpx.post(
            f"{url}/api/2.0/serving-endpoints",
            json={"name": "multi", "config": {"served_entities": [external_entity(stub)]}},
            headers=AUTH,
            timeout=30,
        )
        assert created.status_code == 200, created.text

        servers = _servers(url, 2, deadline)
        children = _children(master.pid)
        assert sorted(servers) == sorted(children)
        assert sorted(v["bastion_leader"] for v in servers.values()) == [0.0, 1.0]
        assert sorted(v["bastion_wal_slot"] for v in servers.values()) == [0.0, 1.0]

        acknowledged: list[str] = []
        lock, stop = threading.Lock(), threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    with httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
                        for _ in range(5):
                            reply = client.post(
                                "/serving-endpoints/multi/invocations",
                                json={"messages": [{"role": "user", "content": "hi"}]},
                            )
                            if reply.status_code == 200:
                                with lock:
                                    acknowledged.append(reply.headers["x-request-id"])
                except httpx.HTTPError:
                    continue

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            while len(acknowledged) < 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            victim = children[0]
            victim_start = start_ticks(victim)
            os.kill(victim, signal.SIGKILL)
            # The master starts a new one (after a second); the other serves meanwhile.
            while time.monotonic() < deadline:
                now = _children(master.pid)
                if len(now) == 2 and victim not in now:
                    break
                time.sleep(0.1)
            assert victim not in _children(master.pid) or start_ticks(victim) != victim_start
            at_restart = len(acknowledged)
            while len(acknowledged) < at_restart + 100 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        _servers(url, 2, deadline)  # both answer again
        master.send_signal(signal.SIGINT)  # a clean stop commits every process's log
        master.wait(timeout=300)
        table = home / "warehouse" / "main" / "default" / "multi_payload"
        ids = Counter(
            DeltaTable(str(table)).to_pyarrow_table(columns=["request_id"]).column(0).to_pylist()
        )
        missing = set(acknowledged) - set(ids)
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged rows missing"
        assert max(ids.values()) == 1
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
        stub.shutdown()
        stub.server_close()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_killing_the_master_stops_its_server_processes(tmp_path: Path) -> None:
    home, port, log = tmp_path / "home", free_port(), tmp_path / "up.log"
    master = _up(home, port, log)
    try:
        deadline = time.monotonic() + 120
        while len(_children(master.pid)) < 2 or not _healthy(port):
            assert master.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        children = _children(master.pid)
        starts = {pid: start_ticks(pid) for pid in children}
        os.kill(master.pid, signal.SIGKILL)
        master.wait()
        while any(start_ticks(pid) == starts[pid] for pid in children):
            assert time.monotonic() < deadline, "server processes outlived their master"
            time.sleep(0.1)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
