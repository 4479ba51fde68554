"""Write-ahead log segments: the on-disk queue between ``DurableWriter.append`` and Delta.

Each table has a directory of numbered segment files. A segment holds one JSON object per
line (orjson, ``\\n``-terminated); every record is written with a single ``os.write`` so a
line is either whole or, after a power loss, a torn tail without its newline, which the
reader ignores. Segment numbers only grow: a segment's number is also the Delta
``txn`` version its rows are committed under, which is what makes replay exactly-once.

Layout of one table directory::

    00000000000000000007.wal     sealed or active segments, one JSON record per line
    committed                    highest segment number already committed to Delta
    dead-letter/00000000000000000007.jsonl
                                 records of segment 7 that could not be converted
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

SEGMENT_SUFFIX = ".wal"
COMMITTED_FILE = "committed"
DEAD_LETTER_DIR = "dead-letter"

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_PARSE_SLICE = 2048


def segment_path(directory: Path, seq: int) -> Path:
    return directory / f"{seq:020d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    """Segment numbers present in ``directory``, oldest first."""
    seqs = []
    for entry in directory.iterdir():
        stem, dot, suffix = entry.name.partition(".")
        if dot and "." + suffix == SEGMENT_SUFFIX and stem.isdigit():
            seqs.append(int(stem))
    return sorted(seqs)


def count_records(path: Path) -> int:
    """Number of complete lines in a segment (a torn tail is not counted)."""
    with path.open("rb") as f:
        return f.read().count(b"\n")


@dataclass
class SegmentContents:
    """What a segment file holds once read back."""

    records: list[dict[str, Any]] = field(default_factory=list)
    corrupt: list[tuple[bytes, str]] = field(default_factory=list)
    """Complete lines that are not a JSON object, with the reason (quarantined, not dropped)."""
    torn_tail: bytes = b""
    """An incomplete last record (no newline): a write the crash interrupted; never acknowledged."""


def read_segment(path: Path) -> SegmentContents:
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    contents = SegmentContents(torn_tail=data[end:])
    body = data[:end]
    if not body:
        return contents
    lines = body[:-1].split(b"\n")
    # Parsed in slices: one orjson call per slice is several times faster than one per line,
    # and a slice is small enough not to hold the GIL for long.
    for start in range(0, len(lines), _PARSE_SLICE):
        _parse_lines(lines[start : start + _PARSE_SLICE], contents)
    return contents


def _parse_lines(lines: list[bytes], into: SegmentContents) -> None:
    try:
        parsed = orjson.loads(b"[" + b",".join(lines) + b"]")
        if len(parsed) == len(lines) and all(type(obj) is dict for obj in parsed):
            into.records.extend(parsed)
            return
    except orjson.JSONDecodeError:
        pass
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            into.corrupt.append((line, f"not valid JSON: {exc}"))
            continue
        if type(obj) is dict:
            into.records.append(obj)
        else:
            into.corrupt.append((line, "not a JSON object"))


class ActiveSegment:
    """The segment ``append`` writes to. Not thread-safe: the caller holds the table's lock."""

    def __init__(self, directory: Path, seq: int) -> None:
        self.seq = seq
        self.path = segment_path(directory, seq)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o644)
        self.rows = 0
        self.size = 0
        self.synced_size = 0
        self.first_row_at = 0.0

    def write(self, data: bytes, rows: int) -> None:
        """Write whole records; on failure, truncate back so no partial record stays behind."""
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(self.fd, view[done:])
        except BaseException:
            if done:
                os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)
        self.rows += rows

    def close(self) -> None:
        os.close(self.fd)


def fsync_path(path: Path) -> None:
    """fsync a file or directory by path (directories: so that created/renamed entries persist)."""
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        done = 0
        while done < len(data):
            done += os.write(fd, view[done:])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_path(path.parent)


def read_committed(directory: Path) -> int:
    """Highest segment number known to be committed (0 when none)."""
    try:
        return int((directory / COMMITTED_FILE).read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def write_committed(directory: Path, seq: int) -> None:
    write_atomic(directory / COMMITTED_FILE, b"%d\n" % seq)


def dead_letter_path(directory: Path, seq: int) -> Path:
    return directory / DEAD_LETTER_DIR / f"{seq:020d}.jsonl"


def write_dead_letters(directory: Path, seq: int, entries: Iterable[Mapping[str, Any]]) -> Path:
    """Write the quarantined records of one segment.

    Atomic and keyed by segment number, so replaying a segment rewrites the same file
    instead of quarantining its records twice.
    """
    path = dead_letter_path(directory, seq)
    path.parent.mkdir(exist_ok=True)
    data = b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in entries)
    write_atomic(path, data)
    return path


def read_dead_letters(directory: Path) -> list[dict[str, Any]]:
    """Every quarantined record of a table directory, oldest segment first."""
    folder = directory / DEAD_LETTER_DIR
    if not folder.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        out.extend(orjson.loads(line) for line in path.read_bytes().splitlines() if line)
    return out
