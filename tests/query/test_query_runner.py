"""How the runner reads Delta tables: native Parquet scans in a database allowed only the
authorized files, the Arrow path for small scans, and the same answers from both."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from bastion.errors import DeadlineExceeded, InvalidRequest, StatementCanceled
from bastion.query import runner
from bastion.query.catalog import DeltaSource

EVENTS = pa.table(
    {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "region": ["US", None, "EU", "US"],
        "amount": [1.5, 2.5, None, 4.0],
        "ts": pa.array(
            [datetime(2025, 1, d, 12, tzinfo=UTC) for d in (1, 1, 2, 3)],
            pa.timestamp("us", tz="UTC"),
        ),
    }
)
QUERY = (
    "SELECT region, date_trunc('day', ts) AS day, count(*) AS n, sum(amount) AS total "
    "FROM events GROUP BY ALL ORDER BY region NULLS LAST, day"
)


def _table(path: Path, data: pa.Table = EVENTS, parts: int = 2) -> DeltaSource:
    step = max(1, data.num_rows // parts)
    for offset in range(0, data.num_rows, step):
        write_deltalake(str(path), data.slice(offset, step), mode="append")
    return DeltaSource.of(DeltaTable(str(path)), str(path))


def _limits(native_scan_bytes: int, timeout_s: float = 30.0) -> runner.Limits:
    sandbox = runner.Sandbox("512MB", 2, native_scan_bytes=native_scan_bytes, scan_slots=1)
    return runner.Limits(sandbox=sandbox, memory_limit="512MB", timeout_s=timeout_s)


def test_native_and_arrow_scans_give_the_same_rows_and_types(tmp_path: Path) -> None:
    source = _table(tmp_path / "events")
    assert source.files is not None and len(source.files) == 2
    assert source.size_bytes > 0
    native, _ = runner.run(QUERY, {"events": source}, {}, _limits(0), max_rows=None)
    arrow, _ = runner.run(QUERY, {"events": source}, {}, _limits(1 << 40), max_rows=None)
    assert native.schema == arrow.schema
    assert native.to_pylist() == arrow.to_pylist()
    assert native.num_rows == 4


def test_a_dedicated_database_opens_only_the_authorized_files(tmp_path: Path) -> None:
    source = _table(tmp_path / "events")
    other = _table(tmp_path / "other")
    assert other.files is not None
    limits = _limits(0)
    rows, _ = runner.run(
        "SELECT count(*) AS n FROM events", {"events": source}, {}, limits, max_rows=None
    )
    assert rows.to_pylist() == [{"n": 4}]
    # Even SQL that never passed the allow-list cannot reach another file from there.
    for sql in (
        f"SELECT * FROM read_parquet('{other.files[0]}')",
        f"SELECT * FROM glob('{tmp_path}/*')",
        f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'",
        "SET enable_external_access = true",
        f"SET allowed_paths = ['{other.files[0]}']",
    ):
        with pytest.raises(InvalidRequest):
            runner.run(sql, {"events": source}, {}, limits, max_rows=None)
    assert not (tmp_path / "x.csv").exists()


def test_a_column_missing_from_the_files_falls_back_to_the_arrow_dataset(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events"
    _table(path)
    # A column added to the table after its files were written: no file holds it.
    wider = EVENTS.slice(0, 0).append_column("note", pa.array([], pa.string()))
    write_deltalake(str(path), wider, mode="append", schema_mode="merge")
    source = DeltaSource.of(DeltaTable(str(path)), str(path))
    assert "note" in source.columns
    rows, _ = runner.run(
        "SELECT count(*) AS n, count(note) AS notes FROM events",
        {"events": source},
        {},
        _limits(0),
        max_rows=None,
    )
    assert rows.to_pylist() == [{"n": 4, "notes": 0}]


def test_partitioned_or_empty_tables_are_read_through_arrow(tmp_path: Path) -> None:
    path = tmp_path / "parted"
    write_deltalake(str(path), EVENTS, partition_by=["region"], mode="append")
    parted = DeltaSource.of(DeltaTable(str(path)), str(path))
    assert parted.files is None
    rows, _ = runner.run(
        "SELECT count(*) AS n FROM t WHERE region = 'US'",
        {"t": parted},
        {},
        _limits(0),
        max_rows=None,
    )
    assert rows.to_pylist() == [{"n": 2}]
    empty = tmp_path / "empty"
    write_deltalake(str(empty), EVENTS.slice(0, 0), mode="append")
    source = DeltaSource.of(DeltaTable(str(empty)), str(empty))
    rows, _ = runner.run(
        "SELECT count(*) AS n FROM t", {"t": source}, {}, _limits(0), max_rows=None
    )
    assert rows.to_pylist() == [{"n": 0}]


def test_large_scans_wait_for_a_slot_until_their_deadline(tmp_path: Path) -> None:
    source = _table(tmp_path / "events")
    limits = _limits(0, timeout_s=0.3)  # one scan slot
    heavy = "SELECT count(*) AS c FROM range(10000000000) a(x), events WHERE (x * 7) % 1000003 = 17"
    busy = runner.Limits(sandbox=limits.sandbox, memory_limit="512MB", timeout_s=60.0)
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def occupy() -> None:
        try:
            runner.run(heavy, {"events": source}, {}, busy, max_rows=None, cancel=cancel)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=occupy, daemon=True)
    thread.start()
    time.sleep(0.3)
    with pytest.raises(DeadlineExceeded, match="other large scans"):
        runner.run("SELECT 1", {"events": source}, {}, limits, max_rows=None)
    cancel.set()
    thread.join(30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], StatementCanceled)
    # The slot is free again: the next large scan runs.
    rows, _ = runner.run(
        "SELECT count(*) AS n FROM events", {"events": source}, {}, limits, max_rows=None
    )
    assert rows.to_pylist() == [{"n": 4}]
