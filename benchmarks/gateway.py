"""Gateway throughput and overhead: direct upstream vs Bastion (logging on) vs LiteLLM proxy.

Starts, on 127.0.0.1 only: the stub upstream (``benchmarks/upstream.py``), Redis, and three
Bastion set-ups, each with an endpoint ``stub`` serving the stub as an external
OpenAI-compatible model, payload + usage logging and tracing on:

* ``bastion up`` — one process, SQLite, its Delta commits in a helper process (the default),
  and again with them in the server process (``BASTION_WRITER_COMMIT_PROCESS=false``);
* ``bastion up --workers 2`` — two server processes on one port, SQLite, Redis;
* two replicas (``bastion up`` + ``bastion serve``) on one PostgreSQL metastore and Redis,
  behind HAProxy — when a PostgreSQL server is given (``--postgres-url``, or
  ``$BASTION_BENCH_POSTGRES_URL`` / ``$BASTION_TEST_POSTGRES_URL``) and ``haproxy`` is
  installed;

and — if it can be installed — a LiteLLM proxy in its own virtualenv with the same upstream.
Loads the direct upstream, then each target in turn, with ``wrk`` at concurrency 1, 16 and 64
and prints requests/s, p50/p99 latency and their overhead over direct. Each target is started,
loaded and stopped on its own, so that no idle set-up's timers, dashboard app or helpers land
in another's figures; just before each target the direct upstream is loaded again at
concurrency 1 (with the target running, idle) and that target's concurrency-1 overhead is
measured against it (for the replicas, the direct upstream is also loaded through the same
HAProxy, to tell the balancer's hop from Bastion's). Once stopped (a clean stop commits every
write-ahead log), each Bastion set-up's payload table is counted against the 200 responses
clients received. Every process it starts is stopped at the end.

    python benchmarks/gateway.py [--duration 10] [--no-litellm] [--workers 2]
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
from collections.abc import Callable
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
console = Console(width=None if sys.stdout.isatty() else 150)


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
def process(
    args: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    stop: signal.Signals = signal.SIGINT,
) -> Any:
    """Runs ``args`` in its own session; on exit, ``stop`` (SIGINT: Bastion's clean stop commits
    its logs) and up to 180 s for it to end, then SIGKILL."""
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
                os.killpg(proc.pid, stop)
                try:
                    proc.wait(timeout=180)  # a clean stop commits the logs
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


@dataclass
class Deployment:
    """One Bastion set-up under load: where clients send requests, where its rows land, and
    how many 200 responses clients have received from it (probes and warm-up included)."""

    label: str
    base: str
    home: Path
    stack: ExitStack
    received: int = 0
    # The direct upstream through the same load balancer, where there is one: what the
    # balancer's own hop adds, apart from Bastion's.
    balanced_upstream: str | None = None


BASTION_ENV = {
    "BASTION_ADMIN_TOKEN": TOKEN,
    "BASTION_ADMIN_PASSWORD": "bench-password",
    "BASTION_EGRESS_ALLOW_HOSTS": '["127.0.0.1"]',
}


def start_bastion(
    stack: ExitStack,
    work: Path,
    upstream: str,
    *,
    workers: int = 1,
    redis: str | None = None,
    in_process_commits: bool = False,
) -> Deployment:
    """``bastion up`` on SQLite: one process, or ``--workers N`` on one port;
    ``in_process_commits``: Delta commits in the server process instead of the default helper
    process (``BASTION_WRITER_COMMIT_PROCESS=false``)."""
    port = free_port()
    home = work / f"bastion-{workers}{'-in-process' if in_process_commits else ''}"
    env = {**BASTION_ENV, "BASTION_HOME": str(home)}
    if redis:
        env["BASTION_REDIS_URL"] = redis
    if in_process_commits:
        env["BASTION_WRITER_COMMIT_PROCESS"] = "false"
    own = stack.enter_context(ExitStack())
    args = ["up", "--port", str(port), "--no-default-model", "--workers", str(workers)]
    own.enter_context(
        process([sys.executable, "-m", "bastion.cli.main", *args], work / f"{home.name}.log", env)
    )
    label = "Bastion, 1 process" if workers == 1 else f"Bastion, --workers {workers}"
    if in_process_commits:
        label += ", commits in the server process"
    deployment = Deployment(label, f"http://127.0.0.1:{port}", home, own)
    wait_http(f"{deployment.base}/healthz")
    create_endpoint(deployment, upstream)
    return deployment


def start_replicas(
    stack: ExitStack, work: Path, upstream: str, *, postgres: str, redis: str, haproxy: str
) -> Deployment:
    """Two replicas (``bastion up`` + ``bastion serve``, one process each) on one PostgreSQL
    metastore and one Redis, behind HAProxy (round robin, keep-alive) on loopback."""
    home = work / "bastion-replicas"
    env = {
        **BASTION_ENV,
        "BASTION_HOME": str(home),
        "BASTION_DATABASE_URL": postgres,
        "BASTION_REDIS_URL": redis,
    }
    own = stack.enter_context(ExitStack())
    ports = [free_port(), free_port()]
    for name, command, port in zip("ab", ("up", "serve"), ports, strict=True):
        args = [command, "--port", str(port), "--workers", "1"]
        if command == "up":
            args.append("--no-default-model")
        own.enter_context(
            process(
                [sys.executable, "-m", "bastion.cli.main", *args],
                work / f"replica-{name}.log",
                env,
            )
        )
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=180)
    lb, lb_direct = free_port(), free_port()
    servers = "\n".join(
        f"    server r{i} 127.0.0.1:{port} check inter 1s" for i, port in enumerate(ports)
    )
    config = work / "haproxy.cfg"
    config.write_text(
        "global\n    maxconn 4096\n    nbthread 1\n"
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n"
        "    timeout server 60s\n    option http-keep-alive\n"
        f"frontend bastion\n    bind 127.0.0.1:{lb}\n    default_backend replicas\n"
        "backend replicas\n    balance roundrobin\n    option httpchk GET /healthz\n"
        "    http-reuse always\n"
        f"{servers}\n"
        f"frontend direct\n    bind 127.0.0.1:{lb_direct}\n    default_backend upstream\n"
        f"backend upstream\n    http-reuse always\n    server u {upstream.removeprefix('http://')}\n"
    )
    # SIGTERM: HAProxy's immediate stop (on SIGINT it waits for its connections to close).
    stop = signal.SIGTERM
    own.enter_context(process([haproxy, "-f", str(config), "-db"], work / "haproxy.log", stop=stop))
    deployment = Deployment(
        "Bastion, 2 replicas + HAProxy (PostgreSQL, Redis)",
        f"http://127.0.0.1:{lb}",
        home,
        own,
        balanced_upstream=f"http://127.0.0.1:{lb_direct}",
    )
    wait_http(f"{deployment.base}/healthz")
    create_endpoint(deployment, upstream)
    return deployment


def create_endpoint(deployment: Deployment, upstream: str) -> None:
    """The endpoint ``stub`` serving the stub upstream as an external model; returns once a
    request through it answers (on every replica: probes go round robin)."""
    base = deployment.base
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
    answered = 0
    while time.monotonic() < deadline and answered < 4:
        with httpx.Client(timeout=30) as client:  # a new connection: another replica / process
            probe = client.post(
                f"{base}/serving-endpoints/chat/completions",
                content=BODY,
                headers={**auth, "content-type": "application/json"},
            )
        if probe.status_code == 200:
            deployment.received += 1
            answered += 1
        else:
            time.sleep(0.5)
    if answered < 4:
        raise RuntimeError(f"the stub endpoint did not answer: {probe.status_code} {probe.text}")


@contextmanager
def redis_server(work: Path) -> Any:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(work)]
    with process(args, work / "redis.log"):
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}"


@contextmanager
def postgres_database(url: str | None) -> Any:
    """A fresh database on the server at ``url`` (dropped afterwards), or None."""
    if not url:
        yield None
        return
    import sqlalchemy as sa

    name = f"bastion_bench_{os.getpid()}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


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
    # uvicorn kills a worker that is not up within 5 s and starts another: on a busy machine
    # LiteLLM's workers never come up. Run its CLI with that check relaxed.
    launcher = (
        "import sys, uvicorn\n"
        "init = uvicorn.Config.__init__\n"
        "def relaxed(self, *args, **kwargs):\n"
        "    kwargs.setdefault('timeout_worker_healthcheck', 600)\n"
        "    init(self, *args, **kwargs)\n"
        "uvicorn.Config.__init__ = relaxed\n"
        "from litellm.proxy.proxy_cli import run_server\n"
        "sys.exit(run_server())\n"
    )
    python = exe.parent / "python"
    args = ["--config", str(config), "--port", str(port), "--host", "127.0.0.1"]
    stack.enter_context(
        process(
            [str(python), "-c", launcher, *args, "--num_workers", "2"],
            work / "litellm.log",
            {"LITELLM_LOG": "ERROR", "DISABLE_ADMIN_UI": "True"},
        )
    )
    return f"http://127.0.0.1:{port}"  # ready once /health/liveliness answers (minutes)


def logged_rows(home: Path) -> tuple[int, int]:
    """(payload rows in Delta, distinct request ids among them), read after the deployment
    stopped: a clean stop commits every process's write-ahead log."""
    table = DeltaTable(str(home / "warehouse" / "main" / "default" / "stub_payload"))
    ids = table.to_pyarrow_table(columns=["request_id"]).column(0)
    return len(ids), len(set(ids.to_pylist()))


def wal_backlog(home: Path) -> int:
    """Bytes in the deployment's write-ahead logs: acknowledged rows not yet in Delta."""
    return sum(path.stat().st_size for path in home.rglob("*.wal") if path.is_file())


def drain_time(home: Path, limit_s: float = 120.0) -> float:
    """Seconds until the write-ahead logs hold less than 1 MB (what a few seconds of idle
    traffic-free commits leave), polled every 0.1 s."""
    began = time.monotonic()
    while wal_backlog(home) >= 1_000_000 and time.monotonic() - began < limit_s:
        time.sleep(0.1)
    return time.monotonic() - began


Target = tuple[str, dict[str, str], Deployment | None]  # URL, headers, whose rows to count


def bastion_target(deployment: Deployment) -> Target:
    """What clients load on a Bastion set-up: the stub endpoint's chat completions."""
    url = f"{deployment.base}/serving-endpoints/chat/completions"
    return url, {"Authorization": f"Bearer {TOKEN}"}, deployment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load level")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="0: no --workers row")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BASTION_BENCH_POSTGRES_URL")
        or os.environ.get("BASTION_TEST_POSTGRES_URL"),
        help="a server to create the replicas' database on (default: $BASTION_BENCH_POSTGRES_URL"
        " or $BASTION_TEST_POSTGRES_URL); without one there is no replicas row",
    )
    parser.add_argument(
        "--litellm-venv", type=Path, default=Path(tempfile.gettempdir()) / "litellm-venv"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bastion-gateway-bench-"))
    results: dict[str, dict[int, Load]] = {}
    adjacent: dict[str, Load] = {}  # the direct upstream at c=1 just before each target
    balanced: dict[str, Load] = {}  # ... and through the target's load balancer, if any
    counts: dict[str, tuple[int, int, int]] = {}  # received, payload rows, distinct ids
    json_headers = {"Content-Type": "application/json"}
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
        direct_url = f"{upstream}/v1/chat/completions"
        redis = stack.enter_context(redis_server(work))
        postgres = stack.enter_context(postgres_database(args.postgres_url))
        exe = None if args.no_litellm else litellm_venv(args.litellm_venv)

        # Each target is started, loaded and stopped on its own: an idle set-up's timers, its
        # dashboard app and its helpers would otherwise land in the next one's tail latency.
        starters: list[tuple[str, Callable[[ExitStack], Target]]] = []

        def bastion(**options: Any) -> Callable[[ExitStack], Target]:
            def start(own: ExitStack) -> Target:
                return bastion_target(start_bastion(own, work, upstream, **options))

            return start

        if exe is not None:
            litellm_exe = exe

            def lite(own: ExitStack) -> Target:
                base = start_litellm(own, work, upstream, litellm_exe)
                wait_http(f"{base}/health/liveliness", timeout=600)
                return (
                    f"{base}/v1/chat/completions",
                    {"Authorization": f"Bearer {LITELLM_KEY}"},
                    None,
                )

            starters.append(("LiteLLM proxy (2 workers)", lite))
        starters.append(("Bastion, 1 process", bastion()))
        starters.append(
            ("Bastion, 1 process, commits in the server process", bastion(in_process_commits=True))
        )
        if args.workers > 1:
            starters.append(
                (
                    f"Bastion, --workers {args.workers}",
                    bastion(workers=args.workers, redis=redis and f"{redis}/1"),
                )
            )
        haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
        needs = (("PostgreSQL", postgres), ("redis-server", redis), ("haproxy", haproxy))
        missing = [what for what, have in needs if not have]
        if missing:
            console.print(f"[yellow]No replicas row: {', '.join(missing)} missing.[/yellow]")
        elif postgres and redis and haproxy:
            db, cache, lb = postgres, f"{redis}/2", haproxy

            def replicas(own: ExitStack) -> Target:
                return bastion_target(
                    start_replicas(own, work, upstream, postgres=db, redis=cache, haproxy=lb)
                )

            starters.append(("Bastion, 2 replicas + HAProxy (PostgreSQL, Redis)", replicas))

        console.print(f"load average before the run: {_load()}")
        results["direct upstream"] = _measure(direct_url, json_headers, levels, args.duration, work)
        for label, start in starters:
            with ExitStack() as own:
                url, headers, owner = start(own)
                headers = {**json_headers, **headers}
                time.sleep(2)  # let start-up work (first commits, app start) settle
                adjacent[label] = run_wrk(direct_url, 1, args.duration, json_headers, work)
                if owner is not None and owner.balanced_upstream:
                    through = f"{owner.balanced_upstream}/v1/chat/completions"
                    balanced[label] = run_wrk(through, 1, args.duration, json_headers, work)
                cpu_before = _cpu_times()
                warm = run_wrk(url, 4, 2, headers, work)
                results[label] = _measure(url, headers, levels, args.duration, work)
                backlog = ""
                if owner is not None:
                    owner.received += warm.completed - warm.errors
                    owner.received += sum(r.completed - r.errors for r in results[label].values())
                    # Commits may trail a saturating load (the helper runs nicer than the
                    # servers): say how far, and how long the logs took to reach Delta.
                    waiting = wal_backlog(owner.home)
                    backlog = (
                        f", {waiting / 1e6:.1f} MB of log waiting for Delta at the end,"
                        f" committed {drain_time(owner.home):.1f} s later"
                    )
                console.print(
                    f"measured {label} (load average {_load()}, CPU steal {_steal(cpu_before)}"
                    f"{backlog})"
                )
            if owner is not None:  # stopped (a clean stop commits every log): count its rows
                counts[label] = (owner.received, *logged_rows(owner.home))

    direct = results["direct upstream"]
    table = Table(title=f"Gateway, {args.duration}s per level, stub upstream on 127.0.0.1")
    columns = ("target", "conc.", "req/s", "p50 ms", "p99 ms", "p50 / p99 overhead ms", "errors")
    for column in columns:
        table.add_column(column, justify="left" if column == "target" else "right")
    for name, by_level in results.items():
        for level, load in by_level.items():
            base = adjacent[name] if level == 1 and name in adjacent else direct[level]
            overhead = (
                ""
                if name == "direct upstream"
                else f"{load.p50_ms - base.p50_ms:.2f} / {load.p99_ms - base.p99_ms:.2f}"
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
    console.print(
        "Overheads at concurrency 1 are against the direct upstream loaded just before each"
        " target, with it running (p50 / p99 ms): "
        + "; ".join(f"{k}: {v.p50_ms:.2f} / {v.p99_ms:.2f}" for k, v in adjacent.items())
    )
    for label, lb_load in balanced.items():
        at_1 = results[label].get(1)
        share = f"; {label}'s p99 over it: {at_1.p99_ms - lb_load.p99_ms:.2f} ms" if at_1 else ""
        console.print(
            f"The direct upstream through {label}'s load balancer alone at concurrency 1:"
            f" p50 / p99 {lb_load.p50_ms:.2f} / {lb_load.p99_ms:.2f} ms{share}."
        )
    for label, (received, rows, distinct) in counts.items():
        lost = received - distinct
        verdict = "none lost" if lost <= 0 else f"{lost} MISSING"
        if distinct != rows:
            verdict += f", {rows - distinct} DUPLICATED"
        console.print(
            f"{label}: {received:,} 200 responses received (wrk, warm-up, probes),"
            f" {rows:,} payload rows in Delta ({verdict})."
        )
    peer = results.get("LiteLLM proxy (2 workers)")
    if peer and 64 in peer:
        ratio = results["Bastion, 1 process"][64].rps / max(peer[64].rps, 1e-9)
        console.print(
            f"Bastion (1 process) / LiteLLM requests/s at concurrency 64: {ratio:.1f}x"
            " (target >= 5x)"
        )
    console.print(f"load average after the run: {_load()}")


def _measure(
    url: str, headers: dict[str, str], levels: list[int], duration: int, work: Path
) -> dict[int, Load]:
    return {c: run_wrk(url, c, duration, headers, work) for c in levels}


def _cpu_times() -> list[int]:
    """The machine's CPU time counters (``/proc/stat``'s first line), empty where there is none."""
    try:
        with open("/proc/stat") as stat:
            return [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return []


def _steal(before: list[int]) -> str:
    """The share of CPU time the hypervisor gave to other guests since ``before``: on a shared
    virtual machine, a run with a few percent of steal is slower for reasons of its own."""
    after = _cpu_times()
    if len(before) < 8 or len(after) < 8:
        return "unknown"
    delta = [a - b for a, b in zip(after, before, strict=False)]
    return f"{100 * delta[7] / max(sum(delta[:8]), 1):.1f} %"


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
