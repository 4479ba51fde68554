"""Where the gateway's tail latency at concurrency 1 goes: a stall profile of one process.

Starts the stub upstream and ``bastion up`` (one process, logging on) with the stall probe of
``benchmarks/stall_probe/`` loaded, loads it with ``wrk`` at concurrency 1, and attributes
every moment the server's event loop could not run for more than 3 ms:

* **GC gen N**: a cyclic garbage-collector pass was running;
* **writer flush**: the durable writer's flush thread was converting rows to Arrow or
  committing to Delta (it shares the GIL with the requests);
* **other in-process**: request work, the tracer, the fsync thread…;
* **machine**: the process burnt little CPU in the gap — the OS ran something else.

    python benchmarks/stalls.py [--duration 30]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.table import Table

import gateway  # the sibling script (on sys.path as this one's folder): processes, wrk, stub
from gateway import TOKEN


def _category(stall: dict[str, Any], passes: list[tuple[float, float, int]]) -> str:
    if stall["cpu_ms"] < 0.5 * stall["gap_ms"]:
        return "machine (process not running)"
    start, end = stall["t"] - stall["gap_ms"] / 1000, stall["t"]
    generations = [gen for (a, b, gen) in passes if a < end and b > start]
    if generations:
        return f"GC gen{max(generations)}"
    flush = stall["where"].get("bastion-writer-flush", [])
    if flush and not flush[-1].endswith(" wait"):
        return "writer flush (Arrow conversion, Delta commit)"
    return "other in-process (requests, tracer, …)"


def profile(
    work: Path, upstream: str, seconds: int, env: dict[str, str]
) -> tuple[gateway.Load, dict[str, list[float]], float]:
    """One ``bastion up`` with ``env`` under wrk at concurrency 1: its load and stalls."""
    saved = dict(gateway.BASTION_ENV)
    gateway.BASTION_ENV.update(env)
    try:
        with ExitStack() as own:
            bastion = gateway.start_bastion(own, work, upstream)
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
            url = f"{bastion.base}/serving-endpoints/chat/completions"
            gateway.run_wrk(url, 4, 2, headers, work)  # warm-up
            begin = time.time()
            load = gateway.run_wrk(url, 1, seconds, headers, work)
            end = time.time()
            time.sleep(3)  # the probe writes its file every ~2 s
    finally:
        gateway.BASTION_ENV.clear()
        gateway.BASTION_ENV.update(saved)
    found = glob.glob(gateway.BASTION_ENV["STALL_PROBE_OUT"] + ".*.json")
    data = json.loads(Path(max(found, key=os.path.getmtime)).read_text())
    passes = [(g["t"] - g["ms"] / 1000, g["t"], g["gen"]) for g in data["gcs"]]
    groups: dict[str, list[float]] = defaultdict(list)
    for stall in data["stalls"]:
        if begin <= stall["t"] <= end:
            groups[_category(stall, passes)].append(stall["gap_ms"])
    return load, groups, end - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bastion-stalls-"))
    probe = Path(__file__).resolve().parent / "stall_probe"
    gateway.BASTION_ENV["STALL_PROBE_OUT"] = str(work / "stalls")
    gateway.BASTION_ENV["PYTHONPATH"] = os.pathsep.join(
        [str(probe), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    variants = {
        "commits in the server process": {"BASTION_WRITER_COMMIT_PROCESS": "false"},
        "commits in a helper process": {"BASTION_WRITER_COMMIT_PROCESS": "true"},
    }
    with ExitStack() as stack:
        port = gateway.free_port()
        upstream_script = gateway.ROOT / "benchmarks" / "upstream.py"
        stack.enter_context(
            gateway.process(
                [sys.executable, str(upstream_script), "--port", str(port)], work / "up.log"
            )
        )
        upstream = f"http://127.0.0.1:{port}"
        gateway.wait_http(f"{upstream}/health")
        plain = {"Content-Type": "application/json"}
        direct = gateway.run_wrk(f"{upstream}/v1/chat/completions", 1, 10, plain, work)
        gateway.console.print(
            f"direct upstream: p50 {direct.p50_ms:.2f} ms, p99 {direct.p99_ms:.2f} ms"
        )
        for name, env in variants.items():
            home = work / name.split()[-2]
            home.mkdir()
            load, groups, seconds = profile(home, upstream, args.duration, env)
            table = Table(title=f"{name}: event-loop stalls > 3 ms, {seconds:.0f} s at c=1")
            for column in ("cause", "per s", "median ms", "max ms", "% of the time"):
                table.add_column(column, justify="left" if column == "cause" else "right")
            for cause, gaps in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
                gaps.sort()
                table.add_row(
                    cause,
                    f"{len(gaps) / seconds:.1f}",
                    f"{gaps[len(gaps) // 2]:.1f}",
                    f"{gaps[-1]:.1f}",
                    f"{sum(gaps) / seconds / 10:.1f}",
                )
            gateway.console.print(table)
            gateway.console.print(
                f"{name}: p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms (overhead "
                f"{load.p50_ms - direct.p50_ms:.2f} / {load.p99_ms - direct.p99_ms:.2f} ms), "
                f"{load.rps:,.0f} req/s; load average "
                + " ".join(f"{v:.2f}" for v in os.getloadavg())
            )


if __name__ == "__main__":
    main()
