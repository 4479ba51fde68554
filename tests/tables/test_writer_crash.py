"""Crash safety of the durable writer, with real processes killed for real."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson

from bastion.tables import delta, wal

CHILD = Path(__file__).with_name("writer_child.py")
TABLE = "main.default.chat_payload"


def run_child(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), *args], capture_output=True, text=True, timeout=120
    )


def keys_in(uri: str) -> collections.Counter[str]:
    if delta.open_table(uri) is None:
        return collections.Counter()
    return collections.Counter(
        delta.read_table(uri, columns=["request_id"])["request_id"].to_pylist()
    )


def test_kill_9_with_unflushed_rows_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    wal_dir, uri = str(tmp_path / "wal"), str(tmp_path / "payload")
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "append", wal_dir, uri, "--flush-rows", "150"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    for line in child.stdout:
        acknowledged.append(line.decode().strip())
        if len(acknowledged) >= 4000:
            break
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    rest = child.stdout.read().decode()
    acknowledged += rest.split("\n")[:-1]  # whole lines only: a torn print is not an ack
    child.stdout.close()
    assert child.stderr is not None
    child.stderr.close()

    before = keys_in(uri)
    assert set(acknowledged) - set(before), "the kill should leave acknowledged rows unflushed"
    assert list(wal.list_segments(Path(wal_dir) / "tables" / TABLE))

    replay = run_child("replay", wal_dir, uri)
    assert replay.returncode == 0, replay.stderr
    stats = orjson.loads(replay.stdout)
    assert stats["pending"] == 0
    assert stats["quarantined"] == 0

    after = keys_in(uri)
    assert set(acknowledged) <= set(after)
    assert [k for k, n in after.items() if n > 1] == []
    # Only WAL segments that were not yet retired were replayed (no table rewrite).
    assert stats["written"] == sum(after.values()) - sum(before.values())


def test_crash_between_delta_commit_and_wal_retirement_is_not_replayed_twice(
    tmp_path: Path,
) -> None:
    wal_dir, uri = str(tmp_path / "wal"), str(tmp_path / "payload")
    crashed = run_child("crash-after-commit", wal_dir, uri, "--rows", "500")
    assert crashed.returncode == 9, crashed.stderr
    assert crashed.stdout.startswith(f"committed {TABLE} ")
    assert "not reached" not in crashed.stdout

    table_dir = Path(wal_dir) / "tables" / TABLE
    segments = wal.list_segments(table_dir)  # the committed one, still there, and a new empty one
    counts = [wal.count_records(wal.segment_path(table_dir, seq)) for seq in segments]
    assert counts == [500, 0]
    assert sum(keys_in(uri).values()) == 500
    version = delta.open_table(uri).version()  # type: ignore[union-attr]

    replay = run_child("replay", wal_dir, uri)
    assert replay.returncode == 0, replay.stderr
    stats = orjson.loads(replay.stdout)
    assert (stats["written"], stats["pending"]) == (0, 0)

    after = keys_in(uri)
    assert len(after) == 500 and set(after.values()) == {1}
    assert delta.open_table(uri).version() == version  # type: ignore[union-attr]
    assert wal.list_segments(table_dir) == []
