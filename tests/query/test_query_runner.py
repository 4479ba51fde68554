"""How a SQL worker reads Delta tables (native Parquet scans in a database allowed only the
authorized files, the Arrow path for small scans, the same answers from both) and how the
runner bounds what comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from bastion.errors import DeadlineExceeded, InvalidRequest, ResourceExhausted, StatementCanceled
from bastion.query import runner
from bastion.query.catalog import DeltaSource
from bastion.query.processes import spawn
from bastion.query.workers import PoolConfig, WorkerPool

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
HEAVY = "SELECT count(*) AS c FROM range(10000000000) a(x) WHERE (x * 7) % 1000003 = 17"


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(PoolConfig(workers=2, per_principal=2, memory_limit_mb=512))
    yield workers
    workers.close()


def _table(path: Path, data: pa.Table = EVENTS, parts: int = 2) -> DeltaSource:
    step = max(1, data.num_rows // parts)
    for offset in range(0, data.num_rows, step):
        write_deltalake(str(path), data.slice(offset, step), mode="append")
    return DeltaSource.of(DeltaTable(str(path)), str(path))


def _limits(
    pool: WorkerPool,
    native_scan_bytes: int,
    timeout_s: float = 30.0,
    principal: int = 1,
    **caps: int | None,
) -> runner.Limits:
    return runner.Limits(
        pool=pool,
        principal=principal,
        deadline=time.monotonic() + timeout_s,
        timeout_s=timeout_s,
        native_scan_bytes=native_scan_bytes,
        **caps,
    )


def test_native_and_arrow_scans_give_the_same_rows_and_types(
    pool: WorkerPool, tmp_path: Path
) -> None:
    source = _table(tmp_path / "events")
    assert source.files is not None and len(source.files) == 2
    assert source.size_bytes > 0
    native, _ = runner.run(QUERY, {"events": source}, {}, _limits(pool, 0), max_rows=None)
    arrow, _ = runner.run(QUERY, {"events": source}, {}, _limits(pool, 1 << 40), max_rows=None)
    assert native.schema == arrow.schema
    assert native.to_pylist() == arrow.to_pylist()
    assert native.num_rows == 4


def test_a_dedicated_database_opens_only_the_authorized_files(
    pool: WorkerPool, tmp_path: Path
) -> None:
    source = _table(tmp_path / "events")
    other = _table(tmp_path / "other")
    assert other.files is not None
    rows, _ = runner.run(
        "SELECT count(*) AS n FROM events", {"events": source}, {}, _limits(pool, 0), max_rows=None
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
            runner.run(sql, {"events": source}, {}, _limits(pool, 0), max_rows=None)
    assert not (tmp_path / "x.csv").exists()


def test_a_kept_database_serves_only_statements_authorized_for_exactly_its_files(
    pool: WorkerPool, tmp_path: Path
) -> None:
    source = _table(tmp_path / "events")
    other = _table(tmp_path / "other")
    assert other.files is not None and source.files is not None
    count = "SELECT count(*) AS n FROM events"
    for _ in range(3):  # every worker of the pool now keeps a database for each file set
        for table in (other, source):
            rows, _ = runner.run(count, {"events": table}, {}, _limits(pool, 0), max_rows=None)
            assert rows.to_pylist() == [{"n": 4}]
    # Authorized for ``source`` only: the database kept for it cannot open ``other``'s files,
    # and a table a previous statement named is not there any more (temporary views).
    for sql in (f"SELECT * FROM read_parquet('{other.files[0]}')", count):
        for _ in range(3):
            with pytest.raises(InvalidRequest):
                runner.run(sql, {"renamed": source}, {}, _limits(pool, 0), max_rows=None)


def test_a_column_missing_from_the_files_falls_back_to_the_arrow_dataset(
    pool: WorkerPool, tmp_path: Path
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
        _limits(pool, 0),
        max_rows=None,
    )
    assert rows.to_pylist() == [{"n": 4, "notes": 0}]


def test_partitioned_or_empty_tables_are_read_through_arrow(
    pool: WorkerPool, tmp_path: Path
) -> None:
    path = tmp_path / "parted"
    write_deltalake(str(path), EVENTS, partition_by=["region"], mode="append")
    parted = DeltaSource.of(DeltaTable(str(path)), str(path))
    assert parted.files is None and parted.version == 0
    rows, _ = runner.run(
        "SELECT count(*) AS n FROM t WHERE region = 'US'",
        {"t": parted},
        {},
        _limits(pool, 0),
        max_rows=None,
    )
    assert rows.to_pylist() == [{"n": 2}]
    # The worker reads the authorized version, not whatever the table holds by then.
    write_deltalake(str(path), EVENTS, partition_by=["region"], mode="append")
    rows, _ = runner.run(
        "SELECT count(*) AS n FROM t", {"t": parted}, {}, _limits(pool, 0), max_rows=None
    )
    assert rows.to_pylist() == [{"n": 4}]
    empty = tmp_path / "empty"
    write_deltalake(str(empty), EVENTS.slice(0, 0), mode="append")
    source = DeltaSource.of(DeltaTable(str(empty)), str(empty))
    rows, _ = runner.run(
        "SELECT count(*) AS n FROM t", {"t": source}, {}, _limits(pool, 0), max_rows=None
    )
    assert rows.to_pylist() == [{"n": 0}]


def test_in_memory_tables_and_parameters_reach_the_worker(pool: WorkerPool) -> None:
    names = pa.table({"name": ["a", "b", "c"], "n": [1, 2, 3]})
    rows, _ = runner.run(
        "SELECT name FROM t WHERE n >= $low ORDER BY name",
        {"t": names},
        {"low": 2},
        _limits(pool, 0),
        max_rows=None,
    )
    assert rows.column("name").to_pylist() == ["b", "c"]


def test_row_and_byte_caps(pool: WorkerPool) -> None:
    sql = "SELECT range AS i, repeat('x', 100) AS s FROM range(100000)"
    rows, truncated = runner.run(sql, {}, {}, _limits(pool, 0), max_rows=10)
    assert truncated and rows.num_rows == 10
    exact, truncated = runner.run("SELECT 1 AS one", {}, {}, _limits(pool, 0), max_rows=1)
    assert not truncated and exact.num_rows == 1
    # byte_limit under the INLINE cap: the first rows that fit, marked truncated.
    caps = {"max_bytes": 4_000_000, "byte_limit": 100_000}
    rows, truncated = runner.run(sql, {}, {}, _limits(pool, 0, **caps), max_rows=None)
    assert truncated and 0 < rows.num_rows < 1000
    assert rows.column("i").to_pylist() == list(range(rows.num_rows))
    # Over the INLINE cap without a byte_limit: an error, not a partial answer.
    with pytest.raises(ResourceExhausted, match="inline"):
        runner.run(sql, {}, {}, _limits(pool, 0, max_bytes=1_000_000), max_rows=None)
    # A byte_limit above the INLINE cap does not lift it.
    caps = {"max_bytes": 1_000_000, "byte_limit": 50_000_000}
    with pytest.raises(ResourceExhausted, match="inline"):
        runner.run(sql, {}, {}, _limits(pool, 0, **caps), max_rows=None)


def test_a_huge_value_fails_in_the_worker_which_stays_usable(pool: WorkerPool) -> None:
    with pytest.raises(ResourceExhausted, match="memory"):
        runner.run(
            "SELECT length(repeat('x', 2000000000)) AS n", {}, {}, _limits(pool, 0), max_rows=None
        )
    rows, _ = runner.run("SELECT 41 + 1 AS n", {}, {}, _limits(pool, 0), max_rows=None)
    assert rows.to_pylist() == [{"n": 42}]


def test_statements_wait_for_a_worker_until_their_deadline(pool: WorkerPool) -> None:
    cancels = [threading.Event(), threading.Event()]
    outcomes: list[BaseException] = []

    def occupy(cancel: threading.Event, principal: int) -> None:
        try:
            runner.run(
                HEAVY,
                {},
                {},
                _limits(pool, 0, timeout_s=120, principal=principal),
                max_rows=None,
                cancel=cancel,
            )
        except BaseException as error:
            outcomes.append(error)

    threads = [
        threading.Thread(target=occupy, args=(cancel, 100 + i), daemon=True)
        for i, cancel in enumerate(cancels)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(pool.busy_pids()) < 2:  # both workers run a heavy statement
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(DeadlineExceeded, match="waiting for a SQL worker"):
        runner.run("SELECT 1", {}, {}, _limits(pool, 0, timeout_s=0.5), max_rows=None)
    for cancel in cancels:
        cancel.set()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert len(outcomes) == 2 and all(isinstance(o, StatementCanceled) for o in outcomes)
    rows, _ = runner.run("SELECT 1 AS one", {}, {}, _limits(pool, 0), max_rows=None)
    assert rows.to_pylist() == [{"one": 1}]


def test_a_killed_worker_fails_its_statement_clearly_and_is_replaced(pool: WorkerPool) -> None:
    outcome: list[BaseException] = []

    def heavy() -> None:
        try:
            runner.run(HEAVY, {}, {}, _limits(pool, 0, timeout_s=120), max_rows=None)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=heavy, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not pool.busy_pids():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (victim,) = pool.busy_pids()
    os.kill(victim, signal.SIGKILL)
    thread.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], ResourceExhausted)
    assert "stopped unexpectedly" in outcome[0].message and "SIGKILL" in outcome[0].message
    rows, _ = runner.run("SELECT 2 AS two", {}, {}, _limits(pool, 0), max_rows=None)
    assert rows.to_pylist() == [{"two": 2}]
    assert victim not in pool.pids()


def test_a_worker_that_does_not_stop_in_its_grace_period_is_killed_and_replaced() -> None:
    pool = WorkerPool(PoolConfig(workers=1, per_principal=1, grace_s=0.5))
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def heavy() -> None:
        try:
            runner.run(HEAVY, {}, {}, _limits(pool, 0, timeout_s=120), max_rows=None, cancel=cancel)
        except BaseException as error:
            outcome.append(error)

    try:
        thread = threading.Thread(target=heavy, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not pool.busy_pids():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (stuck,) = pool.busy_pids()
        os.kill(stuck, signal.SIGSTOP)  # it can no longer answer the interrupt
        cancel.set()
        thread.join(60)
        assert len(outcome) == 1 and isinstance(outcome[0], StatementCanceled)
        assert "did not stop within 0.5 s" in outcome[0].message
        assert _state(stuck) in ("Z", "gone")
        rows, _ = runner.run("SELECT 5 AS five", {}, {}, _limits(pool, 0), max_rows=None)
        assert rows.to_pylist() == [{"five": 5}]
    finally:
        pool.close()


_ORPHANING = """
import sys, time
from bastion.query import runner
from bastion.query.processes import spawn
from bastion.query.workers import PoolConfig, WorkerPool
pool = WorkerPool(PoolConfig(workers=2, per_principal=2))
limits = runner.Limits(pool, 1, time.monotonic() + 60, 60)
runner.run("SELECT 1", {}, {}, limits, max_rows=None)
print(*pool.pids(), flush=True)
time.sleep(600)
"""


def test_workers_die_with_the_server_however_it_dies() -> None:
    server = subprocess.Popen([sys.executable, "-c", _ORPHANING], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        pids = [int(p) for p in server.stdout.readline().split()]
        assert pids and all(_state(pid) not in ("Z", "gone") for pid in pids)
    finally:
        server.kill()  # SIGKILL: no clean-up code of the server runs
        server.wait()
    deadline = time.monotonic() + 60
    while any(_state(pid) not in ("Z", "gone") for pid in pids):
        assert time.monotonic() < deadline, "a SQL worker outlived its server"
        time.sleep(0.05)


def test_a_worker_exits_when_the_servers_end_of_its_control_pipe_closes() -> None:
    # The pipe is what stops a worker where PR_SET_PDEATHSIG does not apply (not Linux, or
    # a process forked from the server holding the socket open).
    worker = spawn(PoolConfig(workers=1))
    try:
        worker.close_control()
        assert worker.process.wait(timeout=60) == 0
    finally:
        worker.kill()


def test_a_closed_pool_kills_its_workers() -> None:
    pool = WorkerPool(PoolConfig(workers=1, per_principal=1))
    runner.run("SELECT 1", {}, {}, _limits(pool, 0), max_rows=None)
    (pid,) = pool.pids()
    pool.close()
    assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
