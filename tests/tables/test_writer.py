"""The durable writer against real WAL files and real Delta tables (no mocks)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pyarrow as pa
import pytest

from bastion.clock import ManualClock
from bastion.errors import Conflict, InvalidRequest, NotFound
from bastion.tables import delta, wal
from bastion.tables.writer import (
    DurableWriter,
    TableSpec,
    WriterFlushFailed,
    WriterOverloaded,
)
from bastion.tables.writer_convert import records_to_arrow


def _load_child() -> ModuleType:
    path = Path(__file__).with_name("writer_child.py")
    spec = importlib.util.spec_from_file_location("bastion_tests_writer_child", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _load_child()
PAYLOAD = child.TABLE
AUDIT = "system.access.audit"
AUDIT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string(), False),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("action_name", pa.string()),
        ("status_code", pa.int32()),
        ("request_params", pa.map_(pa.string(), pa.string())),
        ("user_identity", pa.struct([("email", pa.string()), ("subjectName", pa.string())])),
    ]
)


def audit_spec(tmp_path: Path) -> TableSpec:
    return TableSpec(AUDIT, str(tmp_path / "audit"), AUDIT_SCHEMA, key="event_id")


def audit_row(i: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "event_id": f"ev-{i}",
        "event_time": dt.datetime(2025, 6, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
        "action_name": "getTable",
        "status_code": 200,
        "request_params": {"full_name_arg": "main.default.t"},
        "user_identity": {"email": "bob@example.com", "subjectName": "bob"},
    }
    row.update(overrides)
    return row


def ids(uri: str, column: str = "event_id") -> list[Any]:
    if delta.open_table(uri) is None:
        return []
    return sorted(delta.read_table(uri, columns=[column])[column].to_pylist())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def writer(tmp_path: Path, clock: ManualClock) -> Any:
    w = DurableWriter(tmp_path / "wal", flush_rows=100, flush_interval_s=5.0, clock=clock)
    yield w
    w.close()


def test_round_trip_converts_timestamps_maps_structs_and_lists(tmp_path: Path, writer: Any) -> None:
    spec = child.payload_spec(str(tmp_path / "payload"))
    writer.register(spec)
    rows = [child.payload_row(i) for i in range(3)]
    rows[1]["request_time"] = "2025-06-01T12:00:00.001Z"  # an ISO string is a timestamp too
    rows[2]["request_time"] = dt.datetime(2025, 6, 1, 12, 0, 0, 2000)  # naive means UTC
    rows[2]["request_params"] = None
    writer.append(PAYLOAD, rows[0])
    writer.append_many(PAYLOAD, rows[1:])

    assert writer.flush() == 3
    table = delta.read_table(spec.uri).sort_by("request_id")
    assert table.schema.field("request_params").type == pa.map_(pa.string(), pa.string())
    got = table.to_pylist()
    assert [r["request_time"] for r in got] == [
        child.BASE_TIME + dt.timedelta(milliseconds=i) for i in range(3)
    ]
    assert got[0]["request_params"] == [("temperature", "0.2"), ("max_tokens", "256")]
    assert got[2]["request_params"] is None
    assert got[0]["user_identity"] == {"email": "alice@example.com", "subjectName": "alice"}
    assert got[0]["tags"] == ["chat", "prod"]
    assert got[0]["request_date"] == dt.date(2025, 6, 1)
    assert writer.stats().written == 3 and writer.stats().pending == 0


def test_flush_by_size_without_waiting(tmp_path: Path, writer: Any) -> None:
    writer.register(audit_spec(tmp_path))
    writer.append_many(AUDIT, [audit_row(i) for i in range(99)])
    assert writer.maybe_flush() == 0
    writer.append(AUDIT, audit_row(99))
    assert writer.maybe_flush() == 100
    assert len(ids(str(tmp_path / "audit"))) == 100


def test_flush_by_time_follows_the_injected_clock(
    tmp_path: Path, writer: Any, clock: ManualClock
) -> None:
    writer.register(audit_spec(tmp_path))
    writer.append(AUDIT, audit_row(1))
    clock.advance(4.9)
    writer.append(AUDIT, audit_row(2))
    assert writer.maybe_flush() == 0
    clock.advance(0.1)  # the oldest row is now 5 s old
    assert writer.maybe_flush() == 2
    assert ids(str(tmp_path / "audit")) == ["ev-1", "ev-2"]


def test_the_time_trigger_commits_every_table_in_the_same_round(
    tmp_path: Path, writer: Any, clock: ManualClock
) -> None:
    """One table's oldest row coming due commits the other tables' younger rows too, so the
    tables' commits come together once per interval instead of at scattered moments."""
    payload = child.payload_spec(str(tmp_path / "payload"))
    writer.register(audit_spec(tmp_path))
    writer.register(payload)
    writer.append(AUDIT, audit_row(1))
    clock.advance(3.0)
    writer.append(PAYLOAD, child.payload_row(1))
    clock.advance(1.9)
    assert writer.maybe_flush() == 0  # the oldest row (audit's) is 4.9 s old
    clock.advance(0.1)
    assert writer.maybe_flush() == 2  # audit's row is due; payload's 2 s old row goes with it
    assert ids(str(tmp_path / "audit")) == ["ev-1"]
    assert len(ids(payload.uri, "request_id")) == 1
    writer.append(PAYLOAD, child.payload_row(2))
    clock.advance(4.9)
    assert writer.maybe_flush() == 0  # a new round starts with the next row
    clock.advance(0.1)
    assert writer.maybe_flush() == 1


def test_background_thread_flushes_and_close_flushes_the_rest(tmp_path: Path) -> None:
    w = DurableWriter(tmp_path / "wal", flush_rows=10, flush_interval_s=3600).start()
    w.register(audit_spec(tmp_path))
    w.append_many(AUDIT, [audit_row(i) for i in range(10)])
    done = threading.Event()
    for _ in range(500):  # the flusher thread commits on the size trigger
        if w.stats().written == 10 or done.wait(0.01):
            break
    assert w.stats().written == 10
    w.append(AUDIT, audit_row(10))  # below both triggers: only close() writes it
    w.close()
    assert len(ids(str(tmp_path / "audit"))) == 11
    table_dir = tmp_path / "wal" / "tables" / AUDIT
    assert wal.list_segments(table_dir) == []


def test_replay_after_restart_and_torn_tail(tmp_path: Path, clock: ManualClock) -> None:
    spec = audit_spec(tmp_path)
    table_dir = tmp_path / "wal" / "tables" / AUDIT
    table_dir.mkdir(parents=True)
    # What a crashed process leaves: a full segment, then one whose last write was torn.
    seg = wal.ActiveSegment(table_dir, 1)
    lines = [orjson.dumps(audit_row(i), option=orjson.OPT_APPEND_NEWLINE) for i in range(4)]
    seg.write(b"".join(lines[:3]), 3)
    seg.close()
    wal.segment_path(table_dir, 2).write_bytes(lines[3] + lines[3][:20])

    with DurableWriter(tmp_path / "wal", clock=clock) as w:
        w.register(spec)
        assert w.stats().pending == 4
        assert w.flush() == 4
        assert w.stats().pending == 0
    assert ids(spec.uri) == ["ev-0", "ev-1", "ev-2", "ev-3"]
    assert wal.list_segments(table_dir) == []


def test_backlog_beyond_the_memory_cap_is_read_back_from_the_wal(
    tmp_path: Path, writer: Any
) -> None:
    writer.register(audit_spec(tmp_path))  # flush_rows=100: at most 400 records kept in memory
    writer.append_many(AUDIT, [audit_row(i) for i in range(350)])
    writer.append_many(AUDIT, [audit_row(i) for i in range(350, 700)])
    writer.append(AUDIT, audit_row(700, status_code="bad"))
    assert writer.flush() == 700
    assert len(ids(str(tmp_path / "audit"))) == 700
    assert (writer.stats().quarantined, writer.stats().pending) == (1, 0)


def test_duplicate_keys_in_a_batch_are_written_once_and_counted(
    tmp_path: Path, writer: Any
) -> None:
    writer.register(audit_spec(tmp_path))
    writer.append(AUDIT, audit_row(1, action_name="first"))
    writer.append(AUDIT, audit_row(1, action_name="retry"))
    writer.append(AUDIT, audit_row(2))
    assert writer.flush() == 2
    table = delta.read_table(str(tmp_path / "audit")).sort_by("event_id")
    assert table["action_name"].to_pylist() == ["first", "getTable"]
    assert writer.stats().deduplicated == 1


def test_backpressure_raises_after_a_bounded_wait(tmp_path: Path, clock: ManualClock) -> None:
    with DurableWriter(
        tmp_path / "wal",
        flush_rows=3,
        max_pending_rows=5,
        backpressure_timeout_s=0.0,
        clock=clock,
    ) as w:
        w.register(audit_spec(tmp_path))
        w.append_many(AUDIT, [audit_row(i) for i in range(5)])
        with pytest.raises(WriterOverloaded) as exc:
            w.append(AUDIT, audit_row(5))
        assert exc.value.status_code == 503
        assert (w.stats().pending, w.stats().rejected) == (5, 1)
        w.flush()
        w.append(AUDIT, audit_row(5))  # room again
        assert w.stats().pending == 1
    assert len(ids(str(tmp_path / "audit"))) == 6


def test_backpressure_waits_for_the_flusher(tmp_path: Path, clock: ManualClock) -> None:
    with DurableWriter(
        tmp_path / "wal",
        flush_rows=3,
        max_pending_rows=5,
        backpressure_timeout_s=30.0,
        clock=clock,
    ) as w:
        w.register(audit_spec(tmp_path))
        w.append_many(AUDIT, [audit_row(i) for i in range(5)])
        w.start()  # the flusher makes room while append() waits
        w.append(AUDIT, audit_row(5))
        assert w.stats().rejected == 0
    assert len(ids(str(tmp_path / "audit"))) == 6


def test_failed_commit_keeps_rows_counts_them_and_retries_with_backoff(
    tmp_path: Path, clock: ManualClock
) -> None:
    audit = audit_spec(tmp_path)
    # Someone created the audit table with an incompatible schema.
    delta.create_table_if_missing(audit.uri, pa.schema([("event_id", pa.int64())]))
    payload = child.payload_spec(str(tmp_path / "payload"))
    with DurableWriter(tmp_path / "wal", flush_rows=2, clock=clock, retry_backoff_s=10) as w:
        w.register(audit)
        w.register(payload)
        w.append_many(AUDIT, [audit_row(i) for i in range(3)])
        w.append_many(PAYLOAD, [child.payload_row(i) for i in range(2)])

        with pytest.raises(WriterFlushFailed, match=AUDIT):
            w.flush()
        stats = w.stats()
        assert ids(payload.uri, "request_id") == ["req-00000000", "req-00000001"]
        audit_stats = stats.tables[AUDIT]
        assert (audit_stats.failed, audit_stats.pending, audit_stats.written) == (3, 3, 0)
        assert audit_stats.commit_errors == 1 and audit_stats.last_error
        assert (stats.failed, stats.written) == (3, 2)

        w.append(AUDIT, audit_row(3))  # appends keep working while the table is failing
        assert w.maybe_flush() == 0  # still in backoff: no new attempt
        assert w.stats().tables[AUDIT].commit_errors == 1

        shutil.rmtree(audit.uri)  # the operator fixes the table
        clock.advance(10)
        assert w.maybe_flush() == 4
        audit_stats = w.stats().tables[AUDIT]
        assert (audit_stats.failed, audit_stats.pending, audit_stats.written) == (0, 0, 4)
    assert ids(audit.uri) == ["ev-0", "ev-1", "ev-2", "ev-3"]


def test_unconvertible_rows_are_quarantined_not_dropped(tmp_path: Path, writer: Any) -> None:
    spec = audit_spec(tmp_path)
    writer.register(spec)
    writer.append(AUDIT, audit_row(1))
    writer.append(AUDIT, audit_row(2, status_code="two hundred"))
    writer.append(AUDIT, audit_row(3, user_identity="not a struct"))
    writer.append(AUDIT, audit_row(4))
    assert writer.flush() == 2
    assert ids(spec.uri) == ["ev-1", "ev-4"]
    stats = writer.stats()
    assert (stats.quarantined, stats.written, stats.pending) == (2, 2, 0)
    dead = wal.read_dead_letters(tmp_path / "wal" / "tables" / AUDIT)
    assert sorted(d["record"]["event_id"] for d in dead) == ["ev-2", "ev-3"]
    assert all("column" in d["error"] for d in dead)


def test_append_rejects_what_cannot_be_logged(tmp_path: Path, writer: Any) -> None:
    writer.register(audit_spec(tmp_path))
    with pytest.raises(InvalidRequest, match="no columns"):
        writer.append(AUDIT, audit_row(1, surprise=1))
    with pytest.raises(InvalidRequest, match="key column"):
        writer.append(AUDIT, audit_row(1, event_id=None))
    with pytest.raises(InvalidRequest, match="cannot be logged"):
        writer.append(AUDIT, audit_row(1, action_name=object()))
    with pytest.raises(NotFound):
        writer.append("system.nope", audit_row(1))
    assert writer.stats().pending == 0


def test_one_writer_per_wal_directory_and_one_spec_per_name(tmp_path: Path, writer: Any) -> None:
    with pytest.raises(Conflict):
        DurableWriter(tmp_path / "wal")
    spec = audit_spec(tmp_path)
    writer.register(spec)
    writer.register(spec)
    with pytest.raises(Conflict):
        writer.register(TableSpec(AUDIT, str(tmp_path / "elsewhere"), AUDIT_SCHEMA, "event_id"))


def test_stats_per_table_and_total(tmp_path: Path, writer: Any) -> None:
    writer.register(audit_spec(tmp_path))
    writer.register(child.payload_spec(str(tmp_path / "payload")))
    writer.append_many(AUDIT, [audit_row(i) for i in range(3)])
    writer.append(PAYLOAD, child.payload_row(0))
    stats = writer.stats()
    assert (stats.pending, stats.tables[AUDIT].pending, stats.tables[PAYLOAD].pending) == (4, 3, 1)
    writer.flush()
    writer.append(PAYLOAD, child.payload_row(1))
    stats = writer.stats()
    assert (stats.written, stats.pending) == (4, 1)
    assert (stats.tables[AUDIT].written, stats.tables[PAYLOAD].written) == (3, 1)
    metrics = stats.prometheus()
    assert 'bastion_table_writer_written_total{table="system.access.audit"} 3' in metrics
    assert f'bastion_table_writer_pending{{table="{PAYLOAD}"}} 1' in metrics


def test_closed_writer_refuses_appends(tmp_path: Path) -> None:
    w = DurableWriter(tmp_path / "wal")
    w.register(audit_spec(tmp_path))
    w.close()
    with pytest.raises(Exception, match="closed"):
        w.append(AUDIT, audit_row(1))
    with DurableWriter(tmp_path / "wal") as again:  # the directory lock was released
        again.register(audit_spec(tmp_path))
        assert again.stats().pending == 0


def test_the_platforms_own_table_specs_commit_through_the_helper_process(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The specs the platform builds (from its table storage, whose options are a read-only
    view) reach the helper process: a spec that cannot be pickled kept every row in the WAL
    and committed nothing while the server ran."""
    from bastion.settings import Settings
    from bastion.tables.storage import TableStorage
    from bastion.tables.system import AUDIT as AUDIT_TABLE

    spec = AUDIT_TABLE.spec(TableStorage.from_settings(Settings(home=tmp_path / "home")))
    w = DurableWriter(tmp_path / "wal", flush_rows=100, clock=clock, commit_process=True)
    try:
        w.register(spec)
        w.append(
            spec.name,
            {
                "event_id": "ev-1",
                "event_time": dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
                "service_name": "unityCatalog",
                "action_name": "getTable",
            },
        )
        assert w.flush() == 1
        assert w.stats().pending == 0
    finally:
        w.close()
    assert ids(spec.uri) == ["ev-1"]


def test_commits_in_a_helper_process_dedupe_quarantine_and_replay(
    tmp_path: Path, clock: ManualClock
) -> None:
    import multiprocessing

    spec = audit_spec(tmp_path)
    before = set(multiprocessing.active_children())
    w = DurableWriter(tmp_path / "wal", flush_rows=100, clock=clock, commit_process=True)
    w.register(spec)
    w.append(AUDIT, audit_row(1))
    w.append(AUDIT, audit_row(1, action_name="retry"))
    w.append(AUDIT, audit_row(2, status_code="two hundred"))
    w.append(AUDIT, audit_row(3))
    assert w.flush() == 2
    assert set(multiprocessing.active_children()) - before  # the helper did the commit
    assert ids(spec.uri) == ["ev-1", "ev-3"]
    stats = w.stats()
    assert (stats.written, stats.deduplicated, stats.quarantined, stats.pending) == (2, 1, 1, 0)
    w.append(AUDIT, audit_row(4))
    w.close()  # commits the rest through the helper, then stops it
    assert set(multiprocessing.active_children()) <= before
    assert ids(spec.uri) == ["ev-1", "ev-3", "ev-4"]
    again = DurableWriter(tmp_path / "wal", flush_rows=100, clock=clock, commit_process=True)
    again.register(spec)  # nothing left to replay, nothing committed twice
    assert again.flush() == 0
    again.close()
    assert ids(spec.uri) == ["ev-1", "ev-3", "ev-4"]


@dataclass(frozen=True)
class PairExpander:
    """``{"event_id": "p", "pair": [a, b]}`` stands for two audit rows, ``p-a`` and ``p-b``."""

    field: str = "pair"

    def rows(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        first, second = record["pair"]  # anything else: this record cannot be expanded
        return [
            {"event_id": f"{record['event_id']}-{first}", "status_code": 200},
            {"event_id": f"{record['event_id']}-{second}", "status_code": second},
        ]

    def table(self, records: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
        table, bad = records_to_arrow([r for record in records for r in self.rows(record)], schema)
        if bad:
            raise ValueError(f"rows that do not convert: {sorted(bad)}")
        return table


def pair_spec(tmp_path: Path) -> TableSpec:
    return TableSpec(
        AUDIT, str(tmp_path / "audit"), AUDIT_SCHEMA, key="event_id", expander=PairExpander()
    )


def test_compact_records_are_logged_as_they_are_and_expanded_when_committed(
    tmp_path: Path, writer: Any
) -> None:
    spec = pair_spec(tmp_path)
    writer.register(spec)
    writer.append(AUDIT, {"event_id": "p1", "pair": ["a", 201]})
    writer.append(AUDIT, {"event_id": "p1", "pair": ["again", 202]})  # same key: de-duplicated
    writer.append(AUDIT, {"event_id": "p2", "pair": ["a"]})  # cannot be expanded
    writer.append(AUDIT, {"event_id": "p3", "pair": ["a", "not a number"]})  # 2nd row is bad
    writer.append(AUDIT, audit_row(4))  # a plain row beside them
    directory = tmp_path / "wal" / "tables" / AUDIT
    logged = [
        record
        for seq in wal.list_segments(directory)
        for record in wal.read_segment(wal.segment_path(directory, seq)).records
    ]
    assert [sorted(r) for r in logged[:2]] == [["event_id", "pair"]] * 2  # compact in the log

    assert writer.flush() == 3
    assert ids(spec.uri) == ["ev-4", "p1-201", "p1-a"]
    stats = writer.stats()
    assert (stats.written, stats.deduplicated, stats.quarantined) == (3, 1, 2)
    # A compact record is quarantined whole, as it was logged (p3's good row is not written).
    dead = {d["record"]["event_id"]: d for d in wal.read_dead_letters(directory)}
    assert sorted(dead) == ["p2", "p3"]
    assert dead["p2"]["record"] == {"event_id": "p2", "pair": ["a"]}
    assert "cannot expand" in dead["p2"]["error"]
    assert "status_code" in dead["p3"]["error"]


def test_a_batch_of_good_compact_records_is_expanded_at_once(tmp_path: Path, writer: Any) -> None:
    spec = pair_spec(tmp_path)
    writer.register(spec)
    writer.append_many(AUDIT, [{"event_id": f"p{i}", "pair": ["a", 200 + i]} for i in range(3)])
    writer.append(AUDIT, audit_row(9))
    assert writer.flush() == 7
    assert ids(spec.uri) == ["ev-9", "p0-200", "p0-a", "p1-201", "p1-a", "p2-202", "p2-a"]
    assert writer.stats().quarantined == 0


def test_a_large_batch_of_compact_records_is_expanded_in_slices(
    tmp_path: Path, writer: Any
) -> None:
    spec = pair_spec(tmp_path)
    writer.register(spec)
    writer.append_many(AUDIT, [{"event_id": f"p{i}", "pair": ["a", i]} for i in range(1500)])
    assert writer.flush() == 3000
    assert len(ids(spec.uri)) == 3000


def test_compact_records_hold_the_key_and_the_expanders_field_only(
    tmp_path: Path, writer: Any
) -> None:
    spec = pair_spec(tmp_path)
    writer.register(spec)
    with pytest.raises(InvalidRequest, match="compact record"):
        writer.append(AUDIT, {"event_id": "p1", "pair": ["a", 1], "action_name": "x"})
    with pytest.raises(InvalidRequest, match="no columns"):
        writer.append(AUDIT, {"event_id": "p1", "other": 1})
    with pytest.raises(InvalidRequest, match="is a column"):
        TableSpec(AUDIT, "x", AUDIT_SCHEMA, key="event_id", expander=PairExpander("status_code"))


def _files(uri: str) -> int:
    table = delta.open_table(uri)
    assert table is not None
    return len(table.file_uris())


@pytest.mark.parametrize("commit_process", [False, True], ids=["in-process", "helper"])
def test_small_files_are_compacted_after_commits(
    tmp_path: Path, clock: ManualClock, commit_process: bool
) -> None:
    """Each commit adds a file; once a table holds ``compact_min_files`` small ones, the writer
    rewrites them into one (an OPTIMIZE commit): same rows, exactly-once state intact."""
    spec = audit_spec(tmp_path)
    w = DurableWriter(
        tmp_path / "wal", clock=clock, commit_process=commit_process, compact_min_files=4
    )
    w.register(spec)
    for i in range(3):
        w.append(AUDIT, audit_row(i))
        w.flush()
    assert _files(spec.uri) == 3 and w.stats().compacted == 0  # under the threshold
    w.append(AUDIT, audit_row(3))
    w.flush()
    assert _files(spec.uri) == 1 and w.stats().compacted == 4
    w.append(AUDIT, audit_row(4))
    w.flush()
    assert _files(spec.uri) == 2
    assert 'bastion_table_writer_compacted_total{table="system.access.audit"} 4' in (
        w.stats().prometheus()
    )
    w.close()
    assert ids(spec.uri) == [f"ev-{i}" for i in range(5)]
    table = delta.open_table(spec.uri)
    assert table is not None
    assert delta.transaction_version(table, w.app_id) is not None
    again = DurableWriter(tmp_path / "wal", clock=clock, compact_min_files=4)
    again.register(spec)  # the compaction did not make the log look uncommitted
    assert again.flush() == 0
    again.close()
    assert ids(spec.uri) == [f"ev-{i}" for i in range(5)]


@pytest.mark.parametrize("commit_process", [False, True], ids=["in-process", "helper"])
def test_compact_on_demand_covers_files_other_writers_added(
    tmp_path: Path, clock: ManualClock, commit_process: bool
) -> None:
    """The deployment's compactor also compacts tables it has not committed to lately."""
    spec = audit_spec(tmp_path)
    with DurableWriter(tmp_path / "other", clock=clock) as other:  # never compacts
        other.register(spec)
        for i in range(5):
            other.append(AUDIT, audit_row(i))
            other.flush()
        assert other.compact(AUDIT) == 0
    assert _files(spec.uri) == 5
    with DurableWriter(tmp_path / "wal", clock=clock, commit_process=commit_process) as w:
        w.register(spec)
        assert w.tables() == [AUDIT]
        w.compact_min_files = 6
        assert w.compact(AUDIT) == 0  # five small files: under the threshold
        w.compact_min_files = 5
        assert w.compact(AUDIT) == 5 and w.stats().compacted == 5
    assert _files(spec.uri) == 1
    assert ids(spec.uri) == [f"ev-{i}" for i in range(5)]


@pytest.mark.parametrize("commit_process", [False, True], ids=["in-process", "helper"])
def test_maintenance_leaves_a_table_without_rows_uncreated(
    tmp_path: Path, clock: ManualClock, commit_process: bool
) -> None:
    spec = audit_spec(tmp_path)
    with DurableWriter(
        tmp_path / "wal", clock=clock, commit_process=commit_process, compact_min_files=1
    ) as w:
        w.register(spec)
        assert w.compact(AUDIT) == 0 and w.vacuum(AUDIT) == 0
        assert delta.open_table(spec.uri) is None


def test_compaction_can_be_turned_off(tmp_path: Path, clock: ManualClock) -> None:
    spec = audit_spec(tmp_path)
    with DurableWriter(tmp_path / "wal", clock=clock, compact_min_files=0) as w:
        w.register(spec)
        for i in range(6):
            w.append(AUDIT, audit_row(i))
            w.flush()
        assert w.stats().compacted == 0
    assert _files(spec.uri) == 6


def test_compaction_reads_the_table_as_it_is_now(tmp_path: Path) -> None:
    """A compactor whose view of the table predates another one's compaction (a new leader
    after the old one) refreshes it first: it must not rewrite files that are gone — delta-rs
    would commit that, duplicating their rows."""
    uri = str(tmp_path / "t")
    table = delta.create_table_if_missing(uri, AUDIT_SCHEMA)
    for i in range(4):
        delta.append(table, records_to_arrow([audit_row(i)], AUDIT_SCHEMA)[0])
    stale = delta.open_table(uri)  # sees the same four files
    assert stale is not None
    assert delta.compact_small_files(table, min_files=4) == 4
    assert delta.compact_after_commit(stale, "t", 4) == 0
    assert ids(uri) == [f"ev-{i}" for i in range(4)]
    assert _files(uri) == 1


def test_a_failed_compaction_does_not_fail_the_commit_it_follows(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    table = delta.create_table_if_missing(uri, AUDIT_SCHEMA)
    delta.append(table, records_to_arrow([audit_row(0)], AUDIT_SCHEMA)[0])
    shutil.rmtree(uri)  # storage gone under the writer
    assert delta.compact_after_commit(table, "t", 1) == 0  # logged, not raised


@pytest.mark.parametrize("commit_process", [False, True], ids=["in-process", "helper"])
def test_vacuum_deletes_replaced_files_only_after_the_tables_retention(
    tmp_path: Path, clock: ManualClock, commit_process: bool
) -> None:
    from deltalake import DeltaTable

    kept, short = audit_spec(tmp_path / "kept"), audit_spec(tmp_path / "short")
    short = TableSpec("short", short.uri, AUDIT_SCHEMA, key="event_id")
    DeltaTable.create(  # a table whose replaced files may go at once
        short.uri,
        AUDIT_SCHEMA,
        configuration={"delta.deletedFileRetentionDuration": "interval 0 seconds"},
    )
    parquet = lambda spec: sorted(Path(spec.uri).glob("*.parquet"))  # noqa: E731
    with DurableWriter(
        tmp_path / "wal", clock=clock, commit_process=commit_process, compact_min_files=3
    ) as w:
        for spec in (kept, short):
            w.register(spec)
            for i in range(3):
                w.append(spec.name, audit_row(i))
                w.flush()  # the third commit compacts the three files into one
            assert len(parquet(spec)) == 4
        assert w.vacuum(kept.name) == 0  # Delta's default retention: 7 days
        assert len(parquet(kept)) == 4
        assert w.vacuum(short.name) == 3
        assert len(parquet(short)) == 1
    assert ids(kept.uri) == ids(short.uri) == ["ev-0", "ev-1", "ev-2"]
