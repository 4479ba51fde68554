"""Governed SQL: what governance costs next to plain DuckDB, measured in the same run.

    python benchmarks/sql.py [--rows 10000000] [--writer-rows 200000] [--repeat 3]

Prints one table: governance overhead per statement (parse + check + rewrite), what a
statement costs end to end now that it executes in a SQL worker process (round trip of
``SELECT 1``, a small aggregate) beside plain in-process DuckDB, a KPI aggregate over
``--rows`` rows of a Delta table, and durable-writer throughput, each beside a plain baseline
measured in the same run. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from bastion.bootstrap import initialize
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.governance.store import GrantChange
from bastion.identity.model import PrincipalKind
from bastion.platform import Platform
from bastion.query import QueryEngine, runner
from bastion.query.engine import parse
from bastion.query.planner import Planner
from bastion.query.sandbox import Sandbox
from bastion.settings import Settings
from bastion.tables.columns import arrow_schema, parse_column
from bastion.tables.delta import create_table_if_missing, read_dataset
from bastion.tables.writer import DurableWriter, TableSpec

KPI = (
    "SELECT region, date_trunc('DAY', ts) AS day, count(*) AS requests, "
    "sum(amount) AS revenue, avg(latency_ms) AS avg_latency, max(latency_ms) AS max_latency "
    "FROM main.default.events WHERE status = 200 "
    "GROUP BY region, date_trunc('DAY', ts) ORDER BY revenue DESC"
)
PLAIN_KPI = (
    "SELECT region, date_trunc('DAY', ts) AS day, count(*) AS requests, "
    "sum(amount) AS revenue, avg(latency_ms) AS avg_latency, max(latency_ms) AS max_latency "
    "FROM events WHERE status = 200 "
    "GROUP BY region, date_trunc('DAY', ts) ORDER BY revenue DESC"
)
COLUMNS = [
    ("id", "bigint"),
    ("region", "string"),
    ("status", "int"),
    ("amount", "double"),
    ("latency_ms", "double"),
    ("ts", "timestamp"),
]


def best(fn: Callable[[], Any], repeat: int) -> float:
    """Best wall time of ``repeat`` runs, in seconds (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def per_call(fn: Callable[[], Any], n: int, rounds: int = 5) -> float:
    """Mean time of ``n`` calls, in seconds: the best of ``rounds`` (other work shares the
    machine; the best round is the one it disturbed least)."""
    fn()
    means = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        means.append((time.perf_counter() - started) / n)
    return min(means)


def make_events(rows: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    regions = np.array(["US", "EU", "APAC", "LATAM", "MEA", "CA", "JP", "IN"])
    start = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
    return pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "region": pa.array(regions[rng.integers(0, len(regions), rows)]),
            "status": pa.array(
                rng.choice(np.array([200, 200, 200, 429, 500], dtype=np.int32), rows)
            ),
            "amount": pa.array(rng.random(rows) * 100),
            "latency_ms": pa.array(rng.gamma(2.0, 50.0, rows)),
            "ts": pa.array(
                start + rng.integers(0, 30 * 86_400_000_000, rows), pa.timestamp("us", tz="UTC")
            ),
        }
    )


def setup(home: Path, rows: int, threads: int) -> tuple[Platform, Any, str]:
    settings = Settings(
        home=home,
        database_url=f"sqlite:///{home / 'metastore.db'}",
        cache_poll_interval_s=0,
        sql_worker_threads=threads,  # the SQL workers' defaults otherwise (768 MiB, 2.25 GiB AS)
    )
    platform = Platform(settings)
    initialize(platform)
    admin = platform.identity.find("admin")
    assert admin is not None
    analyst = platform.identity.create_principal(PrincipalKind.USER, "analyst@example.com")
    columns = [parse_column({"name": n, "type_text": t}) for n, t in COLUMNS]
    location = settings.warehouse_dir / "main" / "default" / "events"
    info = platform.governance.create(
        SecurableType.TABLE,
        "main.default.events",
        owner_id=admin.id,
        created_by="admin",
        properties={
            "table_type": "MANAGED",
            "data_source_format": "DELTA",
            "columns": [c.as_dict(i) for i, c in enumerate(columns)],
            "storage_location": str(location),
        },
    )
    platform.governance.update_grants(info.id, [GrantChange(analyst.id, add=(Privilege.SELECT,))])
    location.mkdir(parents=True)
    table = create_table_if_missing(str(location), arrow_schema(columns))
    step = 2_000_000
    for offset in range(0, rows, step):
        write_deltalake(table, make_events(min(step, rows - offset), seed=offset), mode="append")
    return platform, platform.identity_cache.caller(analyst.id), str(location)


def writer_throughput(home: Path, rows: int, repeat: int) -> tuple[float, float, float]:
    schema = pa.schema(
        [
            ("request_id", pa.string()),
            ("endpoint", pa.string()),
            ("status_code", pa.int32()),
            ("latency_ms", pa.float64()),
            ("tokens", pa.int64()),
        ]
    )
    records = [
        {
            "request_id": f"r{i:09d}",
            "endpoint": "chat",
            "status_code": 200,
            "latency_ms": 12.5 + i % 100,
            "tokens": i % 500,
        }
        for i in range(rows)
    ]
    durable: list[float] = []
    for attempt in range(repeat):
        writer = DurableWriter(home / f"wal{attempt}", flush_rows=50_000, max_pending_rows=rows * 2)
        writer.register(
            TableSpec("bench.usage", str(home / f"usage{attempt}"), schema, key="request_id")
        )
        started = time.perf_counter()
        for i in range(0, rows, 1000):
            writer.append_many("bench.usage", records[i : i + 1000])
        writer.flush()
        durable.append(time.perf_counter() - started)
        writer.close()

    def delta_direct() -> None:
        target = home / f"direct{time.perf_counter_ns()}"
        write_deltalake(str(target), pa.Table.from_pylist(records, schema=schema), mode="append")

    def duckdb_insert() -> None:
        conn = duckdb.connect()
        conn.execute(
            "CREATE TABLE usage (request_id VARCHAR, endpoint VARCHAR, status_code INT, "
            "latency_ms DOUBLE, tokens BIGINT)"
        )
        batch = pa.Table.from_pylist(records, schema=schema)
        conn.register("batch", batch)
        conn.execute("INSERT INTO usage SELECT * FROM batch")
        conn.close()

    return (
        rows / min(durable),
        rows / best(delta_direct, repeat),
        rows / best(duckdb_insert, repeat),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--writer-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        print(f"preparing {args.rows:,} rows of main.default.events ...", flush=True)
        platform, analyst, location = setup(home / "home", args.rows, args.threads)
        engine = QueryEngine(platform, timeout_s=600)

        # 1. governance overhead per statement: parse (cached) + check + rewrite + generate.
        def govern() -> None:
            Planner(platform, engine.catalog, analyst).plan_query(parse(KPI)).sql()

        def govern_uncached() -> None:
            from bastion.query.engine import _parse

            Planner(platform, engine.catalog, analyst).plan_query(_parse(KPI)).sql()

        overhead = per_call(govern, 300)
        overhead_cold = per_call(govern_uncached, 100)

        # A small statement end to end, to show the fixed cost against plain DuckDB.
        admin = platform.identity_cache.caller(platform.identity.find("admin").id)  # type: ignore[union-attr]
        engine.execute(admin, "CREATE TABLE main.default.small AS SELECT * FROM events LIMIT 1000")
        engine.execute(admin, "GRANT SELECT ON TABLE main.default.small TO `analyst@example.com`")
        small = "SELECT region, count(*) AS n FROM main.default.small GROUP BY region"
        engine_small = per_call(lambda: engine.execute(analyst, small), 100)
        engine_one = per_call(lambda: engine.execute(analyst, "SELECT 1 AS one"), 100)
        # The worker's own cost: the same governed plan executed by a SQL worker, and
        # in-process in the same locked sandbox the worker uses (how statements ran before).
        plan = Planner(platform, engine.catalog, analyst).plan_query(parse(small))
        sandbox = Sandbox("768MiB", args.threads)

        def in_worker() -> None:
            limits = runner.Limits(engine.pool, analyst.principal_id, time.monotonic() + 60, 60)
            runner.run(plan.sql(), plan.sources, {}, limits, max_rows=None)

        def in_process() -> None:
            with sandbox.connect(runner.describe(plan.sources), engine.native_scan_bytes) as db:
                db.sql(plan.sql()).to_arrow_table()

        worker_small = per_call(in_worker, 100)
        inproc_small = per_call(in_process, 100)
        # The baseline is plain DuckDB at its fastest: in-process, its own reader on the files.
        plain = duckdb.connect(config={"threads": args.threads, "memory_limit": "1GB"})
        files = DeltaTable(location).file_uris()
        plain.read_parquet(files).to_view("events")
        plain.register(
            "small", read_dataset(str(home / "home" / "warehouse" / "main" / "default" / "small"))
        )
        plain_small = per_call(
            lambda: plain.sql(
                "SELECT region, count(*) AS n FROM small GROUP BY region"
            ).to_arrow_table(),
            100,
        )
        plain_one = per_call(lambda: plain.sql("SELECT 1 AS one").to_arrow_table(), 100)

        # 2. KPI aggregate over all rows.
        kpi_engine = best(lambda: engine.execute(analyst, KPI), args.repeat)
        kpi_plain = best(lambda: plain.sql(PLAIN_KPI).to_arrow_table(), args.repeat)
        same = (
            engine.execute(analyst, KPI).table.num_rows
            == plain.sql(PLAIN_KPI).to_arrow_table().num_rows
        )

        # 3. writer throughput.
        print(f"writing {args.writer_rows:,} rows through the durable writer ...", flush=True)
        durable, direct, duck = writer_throughput(home / "writer", args.writer_rows, args.repeat)
        engine.close()
        platform.close()

    rows = [
        (
            "governance overhead / statement (parse+check+rewrite)",
            f"{overhead * 1000:.2f} ms",
            f"cold parse: {overhead_cold * 1000:.2f} ms",
            "< 5 ms",
        ),
        (
            "small statement end to end (1,000 rows)",
            f"{engine_small * 1000:.2f} ms",
            f"plain DuckDB in-process: {plain_small * 1000:.2f} ms",
            "",
        ),
        (
            "overhead / statement, end to end (engine - plain)",
            f"{(engine_small - plain_small) * 1000:.2f} ms",
            f"SELECT 1: {engine_one * 1000:.2f} vs {plain_one * 1000:.2f} ms",
            "< 5 ms",
        ),
        (
            "  of which the SQL worker (same plan: worker - in-process)",
            f"{(worker_small - inproc_small) * 1000:.2f} ms",
            f"{worker_small * 1000:.2f} vs {inproc_small * 1000:.2f} ms",
            "",
        ),
        (
            f"KPI aggregate over {args.rows:,} rows ({args.threads} threads, SQL worker)",
            f"{kpi_engine:.3f} s",
            f"plain DuckDB: {kpi_plain:.3f} s ({kpi_engine / kpi_plain:.2f}x)",
            "< 1 s",
        ),
        (
            "durable writer (WAL -> Delta), rows/s",
            f"{durable:,.0f}",
            f"direct Delta append: {direct:,.0f}; DuckDB INSERT: {duck:,.0f}",
            "> 50,000",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "governed", "baseline (same run)", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print()
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    print(f"\nKPI results identical in shape: {same}")


if __name__ == "__main__":
    main()
