"""Hole 11: ``bastion up`` must not print credentials the operator supplied (service logs)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import free_port


def _run_once(home: Path, port: int, env: dict[str, str]) -> str:
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "up", "--port", str(port), "--no-default-model"],
        env={**os.environ, "BASTION_HOME": str(home), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("server did not become ready")
        # The supplied credentials work...
        me = httpx.get(
            f"{url}/api/2.0/preview/scim/v2/Me",
            headers={"Authorization": f"Bearer {env['BASTION_ADMIN_TOKEN']}"},
        )
        assert me.status_code == 200, me.text
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    return out


def test_supplied_admin_credentials_are_never_printed(tmp_path: Path) -> None:
    password = "operator-chose-this-password-31"
    token = "bstp_" + "7" * 40
    env = {"BASTION_ADMIN_PASSWORD": password, "BASTION_ADMIN_TOKEN": token}
    out = _run_once(tmp_path / "home", free_port(), env)
    assert password not in out and token not in out, out
    assert "BASTION_ADMIN_PASSWORD" in out and "BASTION_ADMIN_TOKEN" in out  # says where they are


def test_generated_token_is_printed_but_supplied_password_is_not(tmp_path: Path) -> None:
    password = "operator-chose-this-password-32"
    env = {"BASTION_ADMIN_PASSWORD": password}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "up", "--port", str(port), "--no-default-model"],
        env={
            **{k: v for k, v in os.environ.items() if k != "BASTION_ADMIN_TOKEN"},
            "BASTION_HOME": str(tmp_path / "home"),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert password not in out, out
    assert re.search(r"token:\s+bstp_[0-9a-f]{40}", out), out
