"""``bastion up`` on a fresh home: initialises, prints the login once, serves, and restarts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from deltalake import DeltaTable

from conftest import free_port


def _start(home: Path, port: int, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "up", "--port", str(port), "--no-default-model"],
        env={**os.environ, "BASTION_HOME": str(home), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not become ready")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    return out


def test_first_run_prints_credentials_once_and_stores_only_hashes(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start(home, port)
    try:
        _wait_ready(url, process)
    finally:
        first = _stop(process)
    token = re.search(r"token:\s+(bstp_[0-9a-f]{40})", first)
    password = re.search(r"password:\s+(\S+)", first)
    assert token and password, first
    assert url in first

    process = _start(home, port)
    try:
        _wait_ready(url, process)
        me = httpx.get(
            f"{url}/api/2.0/preview/scim/v2/Me",
            headers={"Authorization": f"Bearer {token.group(1)}"},
        ).json()
        login = httpx.post(
            f"{url}/oidc/v1/token",
            data={"grant_type": "password", "username": "admin", "password": password.group(1)},
        )
    finally:
        second = _stop(process)
    assert me["userName"] == "admin"
    assert login.status_code == 200
    assert token.group(1) not in second and password.group(1) not in second

    engine = sa.create_engine(f"sqlite:///{home / 'metastore.db'}")
    with engine.connect() as conn:
        rows = [
            str(r)
            for table in ("principals", "tokens")
            for r in conn.execute(sa.text(f"SELECT * FROM {table}"))
        ]
    engine.dispose()
    audit = DeltaTable(str(home / "warehouse" / "system" / "access" / "audit"))
    events = [str(r) for r in audit.to_pyarrow_table().to_pylist()]
    assert any("tokenLogin" in e for e in events)
    rows += events
    assert rows and not any(token.group(1) in r or password.group(1) in r for r in rows)


def test_admin_credentials_from_the_environment(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    url = f"http://127.0.0.1:{port}"
    token = "bstp_" + "b" * 40
    process = _start(home, port, BASTION_ADMIN_PASSWORD="Env-Pass-123", BASTION_ADMIN_TOKEN=token)
    try:
        _wait_ready(url, process)
        me = httpx.get(
            f"{url}/api/2.0/preview/scim/v2/Me", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.status_code == 200
    finally:
        _stop(process)
