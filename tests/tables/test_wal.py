"""WAL segment files: what is written is read back; torn and corrupt lines are not lost silently."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from bastion.tables import wal


def test_active_segment_round_trip_and_listing(tmp_path: Path) -> None:
    seg = wal.ActiveSegment(tmp_path, 7)
    seg.write(b'{"id":"a"}\n{"id":"b"}\n', 2)
    seg.write(b'{"id":"c"}\n', 1)
    seg.close()
    wal.ActiveSegment(tmp_path, 12).close()
    (tmp_path / "committed").write_text("3\n")  # not a segment

    assert wal.list_segments(tmp_path) == [7, 12]
    assert (seg.rows, seg.size) == (3, 33)
    contents = wal.read_segment(wal.segment_path(tmp_path, 7))
    assert [r["id"] for r in contents.records] == ["a", "b", "c"]
    assert contents.torn_tail == b"" and contents.corrupt == []


def test_torn_tail_is_ignored_and_not_counted(tmp_path: Path) -> None:
    path = wal.segment_path(tmp_path, 1)
    path.write_bytes(b'{"id":"a"}\n{"id":"b"}\n{"id":"c","payl')

    contents = wal.read_segment(path)
    assert [r["id"] for r in contents.records] == ["a", "b"]
    assert contents.torn_tail == b'{"id":"c","payl'
    assert wal.count_records(path) == 2


def test_corrupt_lines_are_reported_not_dropped(tmp_path: Path) -> None:
    path = wal.segment_path(tmp_path, 1)
    path.write_bytes(b'{"id":"a"}\n\x00\x00garbage\n[1,2]\n{"id":"d"}\n')

    contents = wal.read_segment(path)
    assert [r["id"] for r in contents.records] == ["a", "d"]
    assert [line for line, _ in contents.corrupt] == [b"\x00\x00garbage", b"[1,2]"]


def test_failed_write_leaves_no_partial_record(tmp_path: Path) -> None:
    seg = wal.ActiveSegment(tmp_path, 1)
    seg.write(b'{"id":"a"}\n', 1)
    os.close(seg.fd)
    seg.fd = os.open(seg.path, os.O_RDONLY)  # writes now fail with EBADF
    try:
        seg.write(b'{"id":"b"}\n', 1)
    except OSError:
        pass
    else:
        raise AssertionError("write to a read-only descriptor should fail")
    seg.close()
    assert (seg.rows, seg.size) == (1, 11)
    assert seg.path.read_bytes() == b'{"id":"a"}\n'


def test_committed_mark_and_dead_letters_are_idempotent(tmp_path: Path) -> None:
    assert wal.read_committed(tmp_path) == 0
    wal.write_committed(tmp_path, 41)
    wal.write_committed(tmp_path, 42)
    assert wal.read_committed(tmp_path) == 42

    entry = {"segment": 5, "error": "bad", "record": {"id": "x"}}
    wal.write_dead_letters(tmp_path, 5, [entry])
    wal.write_dead_letters(tmp_path, 5, [entry])  # replaying segment 5 rewrites, not appends
    assert wal.read_dead_letters(tmp_path) == [entry]
    assert orjson.loads(wal.dead_letter_path(tmp_path, 5).read_bytes()) == entry
