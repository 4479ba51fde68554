"""Delta tables on local disk vs on an S3-compatible store, measured in the same run.

    .venv/bin/python benchmarks/object_storage.py [--commits 30] [--rows 300000]

The store is moto's S3 server on loopback (``tests/s3_server.py``, from the test extras), so
the figures show what the object-store path costs in requests and code, not a network's
latency: on AWS S3 each request adds its round trip (a commit makes ~5-8 requests).

Measured for each backend:

- **append commit**: one Delta commit of 1,000 payload-like rows, tagged with an application
  transaction as the durable writer's commits are (``tables.delta.append``); and two writers
  (two threads, two table handles: as two replicas) appending ``--commits`` such commits
  between them to one table at once, where a commit that loses its version retries;
- **SQL scan**: governed SQL through ``QueryEngine`` (parse, authorize, SQL worker) over a
  ``--rows`` table of 10 commits: an aggregate over every row, and a point look-up.

Printed, not asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bastion.bootstrap import initialize
from bastion.platform import Platform
from bastion.query import QueryEngine
from bastion.settings import Settings
from bastion.tables import delta
from s3_server import S3Server, storage_settings

BUCKET = "bench"
TABLE = "main.default.bench"


def batch(start: int, rows: int) -> pa.Table:
    ids = pa.array(range(start, start + rows), pa.int64())
    return pa.table(
        {
            "id": ids,
            "requester": pa.array(
                [f"user{i % 50}@example.com" for i in range(start, start + rows)]
            ),
            "status_code": pa.array([200 if i % 20 else 500 for i in range(rows)], pa.int32()),
            "total_duration_ms": pa.array([10 + i % 90 for i in range(rows)], pa.int64()),
            "response": pa.array(
                [f'{{"content":"Revenue grew {i % 9}% on the quarter."}}' for i in range(rows)]
            ),
        }
    )


@contextmanager
def platform_on(home: Path, extra: dict[str, Any]) -> Iterator[Platform]:
    settings = Settings(
        home=home,
        database_url=f"sqlite:///{home / 'metastore.db'}",
        admin_password="bench-password",
        cache_poll_interval_s=0,
        **extra,  # type: ignore[arg-type]
    )
    platform = Platform(settings)
    initialize(platform)
    try:
        yield platform
    finally:
        platform.close()


def best(fn: Callable[[], object], rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        began = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - began)
    return min(timings)


def measure(platform: Platform, commits: int, rows: int) -> dict[str, float]:
    storage = platform.table_storage
    admin = platform.identity.find("admin")
    assert admin is not None
    caller = platform.identity_cache.caller(admin.id)
    engine = QueryEngine(platform)
    try:
        engine.execute(
            caller,
            f"CREATE TABLE {TABLE} (id BIGINT, requester STRING, status_code INT, "
            "total_duration_ms BIGINT, response STRING)",
        )
        location = storage.location(TABLE)
        table = delta.open_table(location, storage_options=storage.options_for(location))
        assert table is not None

        latencies = []
        for n in range(commits):
            data = batch(n * 1000, 1000)
            began = time.perf_counter()
            delta.append(table, data, app_id="bench", version=n + 1)
            latencies.append(time.perf_counter() - began)

        # Two replicas appending to one table at once: each commit that loses the race for
        # its version (a 412 on the store) re-reads the log and retries at the next one.
        racers = [
            delta.open_table(location, storage_options=storage.options_for(location))
            for _ in range(2)
        ]

        def race(n: int) -> None:
            racer = racers[n]
            assert racer is not None
            for i in range(commits // 2):
                delta.append(racer, batch(500_000 + n * 100_000 + i * 1000, 1000))

        began = time.perf_counter()
        threads = [threading.Thread(target=race, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        concurrent = time.perf_counter() - began

        per_commit = rows // 10
        for n in range(10):
            delta.append(table, batch(1_000_000 + n * per_commit, per_commit))
        aggregate = (
            f"SELECT requester, count(*) AS n, avg(total_duration_ms) AS ms FROM {TABLE} "
            "WHERE status_code = 200 GROUP BY requester"
        )
        point = f"SELECT * FROM {TABLE} WHERE id = 1000007"
        engine.execute(caller, aggregate)  # warm the SQL worker
        return {
            "commit_p50": statistics.median(latencies),
            "commit_p95": sorted(latencies)[int(0.95 * (len(latencies) - 1))],
            "two_writers": concurrent / (2 * (commits // 2)),
            "scan_aggregate": best(lambda: engine.execute(caller, aggregate), 5),
            "scan_point": best(lambda: engine.execute(caller, point), 5),
        }
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commits", type=int, default=30)
    parser.add_argument("--rows", type=int, default=300_000)
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    s3 = S3Server()
    try:
        s3.create_bucket(BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            with platform_on(Path(tmp) / "local", {}) as platform:
                results["local disk"] = measure(platform, args.commits, args.rows)
            on_s3 = storage_settings(s3.endpoint, f"s3://{BUCKET}/bench")
            with platform_on(Path(tmp) / "s3", on_s3) as platform:
                results["S3 (moto, loopback)"] = measure(platform, args.commits, args.rows)
    finally:
        s3.stop()

    local, remote = results["local disk"], results["S3 (moto, loopback)"]
    table = Table(title=f"Delta on local disk vs S3: {args.commits} commits, {args.rows:,} rows")
    table.add_column("measure")
    table.add_column("local disk", justify="right")
    table.add_column("S3 (moto, loopback)", justify="right")
    table.add_column("S3 / local", justify="right")
    for key, label in (
        ("commit_p50", "append commit of 1,000 rows, p50"),
        ("commit_p95", "append commit of 1,000 rows, p95"),
        ("two_writers", "two writers racing on one table, wall time per commit"),
        ("scan_aggregate", f"SQL aggregate over {args.rows:,} rows (best of 5)"),
        ("scan_point", "SQL point look-up (best of 5)"),
    ):
        table.add_row(
            label,
            f"{local[key] * 1000:.1f} ms",
            f"{remote[key] * 1000:.1f} ms",
            f"{remote[key] / local[key]:.1f}x",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
