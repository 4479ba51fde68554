"""Real Redis and HAProxy servers on loopback, started and stopped by the tests that use them.

Both come from Debian's packages (``.ci/run`` installs them). When one is missing a test
skips with the reason, or fails when ``BASTION_TEST_REQUIRE_SERVICES`` is set (CI sets it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REQUIRED = bool(os.environ.get("BASTION_TEST_REQUIRE_SERVICES"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find(binary: str, *candidates: str) -> str:
    found = shutil.which(binary) or next((c for c in candidates if os.access(c, os.X_OK)), None)
    if found is None:
        message = f"{binary} is not installed: apt-get install {binary}"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return found


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class RedisServer:
    def __init__(self, process: subprocess.Popen[bytes], port: int, password: str | None) -> None:
        self.process = process
        self.port = port
        self.password = password

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def pause(self) -> None:
        """Stop answering (SIGSTOP): connections hang, as with a network partition."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


@contextmanager
def redis_server(workdir: Path, *, password: str | None = None) -> Iterator[RedisServer]:
    binary = find("redis-server", "/usr/bin/redis-server")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    if password:
        args += ["--requirepass", password]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, process, "redis-server")
        yield RedisServer(process, port, password)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
        _stop(process)


@contextmanager
def haproxy(workdir: Path, backends: list[int]) -> Iterator[int]:
    """HAProxy on a free loopback port, round-robin over ``backends`` (HTTP, health-checked
    with /healthz so a dead replica is taken out); yields its port."""
    binary = find("haproxy", "/usr/sbin/haproxy")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    servers = "\n".join(
        f"    server r{i} 127.0.0.1:{backend} check inter 500ms fall 2 rise 1"
        for i, backend in enumerate(backends)
    )
    config = workdir / "haproxy.cfg"
    config.write_text(
        f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
frontend bastion
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /healthz
    retry-on conn-failure empty-response
    retries 2
{servers}
"""
    )
    process = subprocess.Popen(
        [binary, "-f", str(config), "-db"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, process, "haproxy")
        yield port
    finally:
        _stop(process)
