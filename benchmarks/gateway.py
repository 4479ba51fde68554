"""Gateway throughput and overhead: direct upstream vs Bastion (logging on) vs LiteLLM proxy.

Starts, on 127.0.0.1 only: the stub upstream (``benchmarks/upstream.py``), ``bastion up`` with
an endpoint ``stub`` serving it as an external OpenAI-compatible model, and — if it can be
installed — a LiteLLM proxy in its own virtualenv with the same upstream. Loads each with
``wrk`` at concurrency 1, 16 and 64 and prints requests/s, p50/p99 latency, p50 overhead over
direct, and (for Bastion) payload rows logged vs responses sent. Every process it starts is
stopped at the end.

    python benchmarks/gateway.py [--duration 10] [--no-litellm]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from deltalake import DeltaTable
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bstp_" + "be" * 20
LITELLM_KEY = "sk-bench-" + "0f" * 16
BODY = '{"model":"stub","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
console = Console()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 120.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Any:
    with log.open("w") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    completed: int
    errors: int


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, concurrency: int, duration: int, headers: dict[str, str], work: Path) -> Load:
    script = work / "post.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = '{BODY}'"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    threads = 1 if concurrency < 16 else 2
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    completed = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(bad.group(1)) if bad else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return Load(rps, p50, p99, completed, errors)


def start_bastion(stack: ExitStack, work: Path, upstream: str) -> str:
    port = free_port()
    home = work / "bastion-home"
    stack.enter_context(
        process(
            [
                sys.executable,
                "-m",
                "bastion.cli.main",
                "up",
                "--port",
                str(port),
                "--no-default-model",
            ],
            work / "bastion.log",
            {
                "BASTION_HOME": str(home),
                "BASTION_ADMIN_TOKEN": TOKEN,
                "BASTION_ADMIN_PASSWORD": "bench-password",
            },
        )
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    config = {
        "name": "stub",
        "config": {
            "served_entities": [
                {
                    "name": "stub",
                    "external_model": {
                        "provider": "openai",
                        "name": "stub",
                        "task": "llm/v1/chat",
                        "openai_config": {"openai_api_base": f"{upstream}/v1"},
                    },
                }
            ]
        },
    }
    reply = httpx.post(f"{base}/api/2.0/serving-endpoints", json=config, headers=auth, timeout=30)
    reply.raise_for_status()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = httpx.post(
            f"{base}/serving-endpoints/chat/completions",
            content=BODY,
            headers={**auth, "content-type": "application/json"},
            timeout=30,
        )
        if probe.status_code == 200:
            return base
        time.sleep(0.5)
    raise RuntimeError(f"the stub endpoint did not answer: {probe.status_code} {probe.text}")


def litellm_venv(path: Path) -> Path | None:
    exe = path / "bin" / "litellm"
    if exe.exists():
        return exe
    console.print(f"Installing litellm[proxy] into {path} (once; a few minutes)...")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run(
            [str(path / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True, timeout=1200
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        console.print(f"[yellow]LiteLLM could not be installed ({exc}); skipping it.[/yellow]")
        return None
    return exe if exe.exists() else None


def start_litellm(stack: ExitStack, work: Path, upstream: str, exe: Path) -> str:
    port = free_port()
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: stub\n"
        "    litellm_params:\n"
        "      model: openai/stub\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-none\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
    )
    stack.enter_context(
        process(
            [
                str(exe),
                "--config",
                str(config),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--num_workers",
                "2",
            ],
            work / "litellm.log",
            {"LITELLM_LOG": "ERROR", "DISABLE_ADMIN_UI": "True"},
        )
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/health/liveliness", timeout=180)
    return base


def logged_rows(base: str, home: Path) -> tuple[int, int]:
    """(payload rows in Delta, responses the gateway counted), once the writer has caught up."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    sent = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = httpx.get(f"{base}/metrics", headers=auth, timeout=10).text
        pending = sum(
            float(m)
            for m in re.findall(r'bastion_writer_pending_rows\{table="[^"]*_payload"\} (\S+)', text)
        )
        sent = int(
            sum(
                float(m)
                for m in re.findall(
                    r'bastion_gateway_requests_total\{[^}]*endpoint="stub"[^}]*\} (\S+)', text
                )
            )
        )
        if pending == 0:
            break
        time.sleep(0.5)
    table = home / "warehouse" / "main" / "default" / "stub_payload"
    return DeltaTable(str(table)).to_pyarrow_dataset().count_rows(), sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load level")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument(
        "--litellm-venv", type=Path, default=Path(tempfile.gettempdir()) / "litellm-venv"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bastion-gateway-bench-"))
    results: dict[str, dict[int, Load]] = {}
    with ExitStack() as stack:
        up_port = free_port()
        stack.enter_context(
            process(
                [sys.executable, str(ROOT / "benchmarks" / "upstream.py"), "--port", str(up_port)],
                work / "upstream.log",
            )
        )
        upstream = f"http://127.0.0.1:{up_port}"
        wait_http(f"{upstream}/health")
        targets = {"direct upstream": (f"{upstream}/v1/chat/completions", {})}
        bastion = start_bastion(stack, work, upstream)
        targets["Bastion (logging on)"] = (
            f"{bastion}/serving-endpoints/chat/completions",
            {"Authorization": f"Bearer {TOKEN}"},
        )
        if not args.no_litellm:
            exe = litellm_venv(args.litellm_venv)
            if exe is not None:
                litellm = start_litellm(stack, work, upstream, exe)
                targets["LiteLLM proxy (2 workers)"] = (
                    f"{litellm}/v1/chat/completions",
                    {"Authorization": f"Bearer {LITELLM_KEY}"},
                )
        for name, (url, headers) in targets.items():
            headers = {"Content-Type": "application/json", **headers}
            run_wrk(url, 4, 2, headers, work)  # warm-up
            results[name] = {c: run_wrk(url, c, args.duration, headers, work) for c in levels}
            console.print(f"measured {name}")
        rows, sent = logged_rows(bastion, work / "bastion-home")

    direct = results["direct upstream"]
    table = Table(title=f"Gateway, {args.duration}s per level, stub upstream on 127.0.0.1")
    for column in ("target", "conc.", "req/s", "p50 ms", "p99 ms", "p50 overhead ms", "errors"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for name, by_level in results.items():
        for level, load in by_level.items():
            overhead = (
                "" if name == "direct upstream" else f"{load.p50_ms - direct[level].p50_ms:.2f}"
            )
            table.add_row(
                name,
                str(level),
                f"{load.rps:,.0f}",
                f"{load.p50_ms:.2f}",
                f"{load.p99_ms:.2f}",
                overhead,
                str(load.errors),
            )
    console.print(table)
    received = sum(
        load.completed - load.errors for load in results["Bastion (logging on)"].values()
    )
    console.print(
        f"Bastion: {received:,} responses received by wrk (plus warm-up and probes), "
        f"{sent:,} responses counted by the gateway, {rows:,} payload rows in Delta "
        f"({'none lost' if rows >= sent else f'{sent - rows} MISSING'})."
    )
    lite = results.get("LiteLLM proxy (2 workers)")
    if lite and 64 in lite:
        ratio = results["Bastion (logging on)"][64].rps / max(lite[64].rps, 1e-9)
        console.print(
            f"Bastion / LiteLLM requests/s at concurrency 64: {ratio:.1f}x (target >= 5x)"
        )


if __name__ == "__main__":
    main()
