"""CLI start-up: ``bastion --help`` and ``bastion catalogs list`` beside ``python -c pass``.

    python benchmarks/cli.py [--runs 15]

Starts a throw-away server (no model) for the command that calls it, times each command as a
fresh process (the way a user runs it), and prints the median, p90 and the difference from the
bare interpreter, measured in the same run. Goal: both commands under 0.3 s. Nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TOKEN = "bstp_" + "c" * 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _time(command: list[str], env: dict[str, str], runs: int) -> list[float]:
    subprocess.run(command, env=env, capture_output=True, check=True)  # warm the file cache
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        samples.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bastion-cli-bench-"))
    port = _free_port()
    env = {
        **os.environ,
        "BASTION_HOME": str(home / "home"),
        "BASTION_ADMIN_TOKEN": TOKEN,
        "BASTION_HOST": f"http://127.0.0.1:{port}",
        "BASTION_TOKEN": TOKEN,
        "BASTION_CONFIG_FILE": str(home / "config"),
    }
    server_env = {k: v for k, v in env.items() if k not in ("BASTION_HOST", "BASTION_TOKEN")}
    server = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli.main", "up", "--port", str(port), "--no-default-model"],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        bastion = str(Path(sys.executable).with_name("bastion"))
        rows = [
            ("python -c pass", _time([sys.executable, "-c", "pass"], env, args.runs)),
            ("bastion --help", _time([bastion, "--help"], env, args.runs)),
            ("bastion catalogs list", _time([bastion, "catalogs", "list"], env, args.runs)),
        ]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(home, ignore_errors=True)
    base = statistics.median(rows[0][1])
    print(f"CLI start-up, {args.runs} runs each (fresh processes), goal < 0.300 s")
    print(f"{'command':<24} {'median s':>9} {'p90 s':>8} {'over python':>12}")
    for name, samples in rows:
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        print(f"{name:<24} {median:>9.3f} {p90:>8.3f} {median - base:>+12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
