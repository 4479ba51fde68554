"""Durable table writer throughput, beside a plain pyarrow → deltalake baseline in the same run.

    .venv/bin/python benchmarks/writer.py [--rows 200000]

Rows are shaped like inference-table (payload) rows: ids, timestamps, a map, a struct, a list
and ~200 bytes of request/response JSON. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import write_deltalake

from bastion.tables import delta
from bastion.tables.writer import DurableWriter, TableSpec

TABLE = "main.default.bench_payload"
SCHEMA = pa.schema(
    [
        ("request_id", pa.string(), False),
        ("client_request_id", pa.string()),
        ("request_time", pa.timestamp("us", tz="UTC")),
        ("status_code", pa.int32()),
        ("execution_duration_ms", pa.int64()),
        ("request", pa.string()),
        ("response", pa.string()),
        ("requester", pa.string()),
        ("served_entity_name", pa.string()),
        ("request_params", pa.map_(pa.string(), pa.string())),
        ("user_identity", pa.struct([("email", pa.string()), ("subjectName", pa.string())])),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("tags", pa.list_(pa.string())),
    ]
)
START = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def row(i: int) -> dict[str, Any]:
    return {
        "request_id": f"req-{i:010d}",
        "client_request_id": f"c-{i}",
        "request_time": START + dt.timedelta(microseconds=i * 137),
        "status_code": 200,
        "execution_duration_ms": 10 + i % 90,
        "request": '{"messages":[{"role":"user","content":"Summarise the quarterly report '
        f'for region {i % 17}"}}],"max_tokens":256}}',
        "response": '{"choices":[{"message":{"role":"assistant","content":"Revenue grew '
        f'{i % 9}% on the quarter."}}}}]}}',
        "requester": f"user{i % 50}@example.com",
        "served_entity_name": "llama-3-8b-1",
        "request_params": {"temperature": "0.2", "max_tokens": "256"},
        "user_identity": {"email": f"user{i % 50}@example.com", "subjectName": f"user{i % 50}"},
        "input_tokens": 20 + i % 7,
        "output_tokens": 5 + i % 11,
        "tags": ["chat", "prod"],
    }


def spec(home: Path, name: str) -> TableSpec:
    return TableSpec(TABLE, str(home / name), SCHEMA, key="request_id")


def baseline(home: Path, rows: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    write_deltalake(str(home / "baseline"), table, mode="append")
    return time.perf_counter() - started


def end_to_end(home: Path, rows: list[dict[str, Any]]) -> float:
    s = spec(home, "writer")
    started = time.perf_counter()
    writer = DurableWriter(home / "wal-e2e", flush_rows=20_000, flush_interval_s=1.0).start()
    writer.register(s)
    for r in rows:
        writer.append(TABLE, r)
    writer.close()  # flushes what is left
    elapsed = time.perf_counter() - started
    assert delta.read_table(s.uri, columns=["request_id"]).num_rows == len(rows)
    return elapsed


def append_only(home: Path, rows: list[dict[str, Any]], fsync_interval_s: float) -> list[int]:
    """Per-append latencies (ns) with no flush running: the acknowledgement cost alone."""
    name = f"wal-append-{fsync_interval_s}"
    writer = DurableWriter(
        home / name,
        flush_rows=len(rows),
        max_pending_rows=len(rows),
        fsync_interval_s=fsync_interval_s,
    )
    writer.register(spec(home, name + "-table"))
    append = writer.append
    clock = time.perf_counter_ns
    latencies = []
    for r in rows:
        t0 = clock()
        append(TABLE, r)
        latencies.append(clock() - t0)
    writer.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    rows = [row(i) for i in range(args.rows)]
    fsync_rows = rows[: min(len(rows), 2_000)]

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        base = baseline(home, rows)
        e2e = end_to_end(home, rows)
        acks = append_only(home, rows, fsync_interval_s=0.2)
        synced = append_only(home, fsync_rows, fsync_interval_s=0)

    def pct(values: list[int], q: float) -> float:
        return sorted(values)[int(q * (len(values) - 1))] / 1000

    print(f"durable writer, {args.rows:,} payload-like rows ({SCHEMA.names.__len__()} columns)\n")
    print(f"{'case':<52}{'rows/s':>12}{'µs/row':>9}{'p50 µs':>9}{'p99 µs':>9}")
    print("-" * 91)
    lines = [
        ("(a) baseline: from_pylist + write_deltalake, 1 batch", len(rows) / base, None),
        ("(b) DurableWriter append() + background flush, e2e", len(rows) / e2e, None),
        ("(c) append() alone (ack = os.write, fsync batched)", None, acks),
        ("(d) append() with fsync_interval_s=0 (fsync per row)", None, synced),
    ]
    for label, rate, latencies in lines:
        if latencies is not None:
            rate = len(latencies) / (sum(latencies) / 1e9)
            print(
                f"{label:<52}{rate:>12,.0f}{1e6 / rate:>9.2f}"
                f"{pct(latencies, 0.5):>9.2f}{pct(latencies, 0.99):>9.2f}"
            )
        else:
            assert rate is not None
            print(f"{label:<52}{rate:>12,.0f}{1e6 / rate:>9.2f}{'':>9}{'':>9}")
    ratio = (len(rows) / e2e) / (len(rows) / base)
    mean_ack = statistics.mean(acks) / 1000
    print(f"\nend-to-end writer / baseline: {ratio:.2f}x   mean append(): {mean_ack:.2f} µs")


if __name__ == "__main__":
    main()
