"""A process that writes through a DurableWriter, for the crash tests (and the payload schema
they share).

    python writer_child.py append WAL_DIR TABLE_URI [--rows N] [--flush-rows N]
        appends rows with the background flusher running and prints each row's key to stdout
        as soon as ``append`` has returned (= the row is acknowledged); the test kill -9s it.
    python writer_child.py crash-after-commit WAL_DIR TABLE_URI [--rows N]
        appends N rows, flushes, and exits with os._exit right after the Delta commit, before
        the WAL segment is retired.
    python writer_child.py replay WAL_DIR TABLE_URI
        opens the WAL again, flushes, and prints the writer's stats as JSON.

``--prefix P`` names the row keys ``P-00000001``...; ``--start-file F`` makes ``append`` wait
until F exists (so that several children start appending together); ``--commit-every N``
commits after every N rows. A table on an object
store takes its delta-rs storage options (JSON) from ``WRITER_CHILD_STORAGE_OPTIONS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
import time
from typing import Any

import orjson
import pyarrow as pa

from bastion.tables.writer import DurableWriter, TableSpec

TABLE = "main.default.chat_payload"


def payload_schema() -> pa.Schema:
    """Shaped like an inference (payload) table row."""
    return pa.schema(
        [
            ("request_id", pa.string(), False),
            ("client_request_id", pa.string()),
            ("request_date", pa.date32()),
            ("request_time", pa.timestamp("us", tz="UTC")),
            ("status_code", pa.int32()),
            ("execution_duration_ms", pa.int64()),
            ("request", pa.string()),
            ("response", pa.string()),
            ("requester", pa.string()),
            ("request_params", pa.map_(pa.string(), pa.string())),
            (
                "user_identity",
                pa.struct([("email", pa.string()), ("subjectName", pa.string())]),
            ),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("tags", pa.list_(pa.string())),
        ]
    )


def payload_spec(uri: str) -> TableSpec:
    options = orjson.loads(os.environ.get("WRITER_CHILD_STORAGE_OPTIONS") or "null")
    return TableSpec(
        TABLE,
        uri,
        payload_schema(),
        key="request_id",
        partition_by=("request_date",),
        storage_options=options,
    )


BASE_TIME = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def payload_row(i: int, prefix: str = "req") -> dict[str, Any]:
    at = BASE_TIME + dt.timedelta(milliseconds=i)
    return {
        "request_id": f"{prefix}-{i:08d}",
        "client_request_id": f"client-{i}",
        "request_date": at.date(),
        "request_time": at,
        "status_code": 200,
        "execution_duration_ms": 12 + i % 50,
        "request": '{"messages":[{"role":"user","content":"Summarise the quarterly report"}]}',
        "response": '{"choices":[{"message":{"role":"assistant","content":"Revenue grew."}}]}',
        "requester": "alice@example.com",
        "request_params": {"temperature": "0.2", "max_tokens": "256"},
        "user_identity": {"email": "alice@example.com", "subjectName": "alice"},
        "input_tokens": 21,
        "output_tokens": 4,
        "tags": ["chat", "prod"],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["append", "crash-after-commit", "replay"])
    parser.add_argument("wal_dir")
    parser.add_argument("uri")
    parser.add_argument("--rows", type=int, default=10**9)
    parser.add_argument("--flush-rows", type=int, default=200)
    parser.add_argument("--prefix", default="req")
    parser.add_argument("--start-file")
    parser.add_argument("--commit-every", type=int, default=0)
    args = parser.parse_args(argv)
    spec = payload_spec(args.uri)

    if args.mode == "append":
        writer = DurableWriter(
            args.wal_dir, flush_rows=args.flush_rows, flush_interval_s=0.05, fsync_interval_s=0.05
        ).start()
        writer.register(spec)
        while args.start_file and not os.path.exists(args.start_file):
            time.sleep(0.01)
        for i in range(args.rows):
            writer.append(TABLE, payload_row(i, args.prefix))
            print(f"{args.prefix}-{i:08d}", flush=True)
            if args.commit_every and (i + 1) % args.commit_every == 0:
                writer.flush()  # one Delta commit per this many rows
        writer.close()
    elif args.mode == "crash-after-commit":

        def crash(table: str, segment: int) -> None:
            print(f"committed {table} {segment}", flush=True)
            os._exit(9)

        writer = DurableWriter(args.wal_dir, flush_rows=10**6, after_commit=crash)
        writer.register(spec)
        writer.append_many(TABLE, [payload_row(i) for i in range(args.rows)])
        writer.flush()
        print("not reached", flush=True)
    else:
        with DurableWriter(args.wal_dir) as writer:
            writer.register(spec)
            writer.flush()
            stats = writer.stats()
        sys.stdout.buffer.write(orjson.dumps(dataclasses.asdict(stats)) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
