"""Under load, kill -9 the server, restart it: every answered request has exactly one row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from deltalake import DeltaTable

from conftest import free_port
from upstream_stub import external_entity, start_stub

TOKEN = "bstp_" + "d" * 40


def _start(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BASTION_HOME": str(home),
        "BASTION_ADMIN_TOKEN": TOKEN,
        # Nothing reaches Delta on its own during the run: the kill finds rows only in the log.
        "BASTION_WRITER_FLUSH_INTERVAL_S": "3600",
        "BASTION_WRITER_FLUSH_ROWS": "1000000",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "up", "--port", str(port), "--no-default-model"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


def _rows(home: Path) -> Counter[str]:
    table = home / "warehouse" / "main" / "default" / "crashy_payload"
    if not (table / "_delta_log").exists():
        return Counter()
    ids = DeltaTable(str(table)).to_pyarrow_table(columns=["client_request_id"]).column(0)
    return Counter(ids.to_pylist())


def test_kill_9_under_load_loses_no_answered_request(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    url = f"http://127.0.0.1:{port}"
    stub = start_stub("ok")
    server = _start(home, port)
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        _ready(url)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        config = {"served_entities": [external_entity(stub)]}
        created = httpx.post(
            f"{url}/api/2.0/serving-endpoints",
            json={"name": "crashy", "config": config},
            headers=auth,
            timeout=30,
        )
        assert created.status_code == 200, created.text

        def load(worker: int) -> None:
            with httpx.Client(base_url=url, headers=auth, timeout=10) as client:
                n = 0
                while not stop.is_set():
                    cid = f"w{worker}-{n}"
                    n += 1
                    try:
                        reply = client.post(
                            "/serving-endpoints/crashy/invocations",
                            json={
                                "messages": [{"role": "user", "content": "hi"}],
                                "client_request_id": cid,
                            },
                        )
                    except httpx.HTTPError:
                        continue  # the server died under this request: no response, no claim
                    if reply.status_code == 200:
                        with lock:
                            answered.append(cid)

        threads = [threading.Thread(target=load, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(answered) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        stop.set()
        for thread in threads:
            thread.join()
        acknowledged = set(answered)
        assert len(acknowledged) >= 100
        before = _rows(home)
        assert sum(before.values()) < len(acknowledged), "rows were flushed before the kill"

        server = _start(home, port)
        _ready(url)
        deadline = time.monotonic() + 60
        while True:
            metrics = httpx.get(f"{url}/metrics", headers=auth, timeout=10).text
            pending = [
                line
                for line in metrics.splitlines()
                if line.startswith(
                    'bastion_writer_pending_rows{table="main.default.crashy_payload"}'
                )
            ]
            if pending and float(pending[0].split()[-1]) == 0:
                break
            assert time.monotonic() < deadline, f"replay did not finish: {pending}"
            time.sleep(0.5)
        # Force the commit of what was replayed (flush interval is an hour in this test).
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        after = _rows(home)
        missing = acknowledged - set(after)
        duplicated = {cid: n for cid, n in after.items() if n > 1}
        print(
            f"answered {len(acknowledged)}, rows in Delta before restart {sum(before.values())}, "
            f"after {sum(after.values())}, missing {len(missing)}, duplicated {len(duplicated)}"
        )
        assert not missing and not duplicated
    finally:
        stop.set()
        if server.poll() is None:
            server.kill()
        stub.shutdown()
        stub.server_close()
