"""One write-ahead log per server process: slots under the WAL directory, claimed by lock.

A WAL directory belongs to one :class:`~bastion.tables.writer.DurableWriter` at a time (an
``flock`` on its ``LOCK``), and its ``WRITER_ID`` names the Delta application transaction its
batches are committed under. With several processes on one host (``bastion up --workers N``,
or replicas sharing ``BASTION_HOME``), each process claims the **lowest free slot**::

    wal/                 slot 0 (the single-process layout, unchanged)
    wal/slots/1/         slot 1
    wal/slots/2/         …

A process that is killed releases its slot with its lock; when it (or any process) starts
again it claims the lowest free slot — its own, while the others keep theirs — and replays
what the slot holds, exactly once, because the slot keeps its writer id. A slot nobody
claims any more (fewer processes than before) is drained by the leader
(:func:`drain_orphans`): it takes the slot's lock, commits what is left, and lets it go.

Rows are de-duplicated across slots by construction: a row is in exactly one slot's log, and
each slot's batches carry their own (writer id, segment) transaction in the Delta log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bastion.errors import Conflict
from bastion.tables import wal
from bastion.tables.writer import DurableWriter, TableSpec

logger = logging.getLogger(__name__)

MAX_SLOTS = 256


def slot_path(root: Path, slot: int) -> Path:
    return root if slot == 0 else root / "slots" / str(slot)


def slots(root: Path) -> list[Path]:
    """Every slot directory that exists under ``root`` (slot 0 first)."""
    found = [root] if root.is_dir() else []
    folder = root / "slots"
    if folder.is_dir():
        numbered = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
        found += sorted(numbered, key=lambda p: int(p.name))
    return found


def open_slot(root: Path, **options: Any) -> tuple[DurableWriter, int]:
    """A writer on the lowest slot no other process holds, and that slot's number."""
    for slot in range(MAX_SLOTS):
        try:
            return DurableWriter(slot_path(root, slot), **options), slot
        except Conflict:
            continue
    raise Conflict(f"all {MAX_SLOTS} write-ahead log slots under {root} are in use")


def pending_tables(directory: Path) -> list[str]:
    """Tables of one slot that still hold segments (rows not yet in Delta)."""
    tables = directory / "tables"
    if not tables.is_dir():
        return []
    return sorted(p.name for p in tables.iterdir() if p.is_dir() and wal.list_segments(p))


def drain_orphans(
    root: Path,
    *,
    own: Path,
    resolve: Callable[[str], TableSpec | None],
    **options: Any,
) -> int:
    """Commit what unclaimed slots hold; returns the rows written.

    ``resolve(table name)`` gives a table's spec (None: leave its rows where they are, e.g.
    a payload table no endpoint uses any more). A slot whose lock is held belongs to a live
    process and is skipped.
    """
    written = 0
    for directory in slots(root):
        if directory.resolve() == own.resolve():
            continue
        names = pending_tables(directory)
        if not names:
            continue
        try:
            writer = DurableWriter(directory, **options)
        except Conflict:
            continue  # a live process's slot
        try:
            for name in names:
                spec = resolve(name)
                if spec is None:
                    logger.warning(
                        "rows of %s stay in the unclaimed write-ahead log %s: no table of "
                        "that name is registered",
                        name,
                        directory,
                    )
                    continue
                writer.register(spec)
            written += writer.flush()
            logger.info(
                "replayed %d rows from the unclaimed write-ahead log %s", written, directory
            )
        finally:
            writer.close()
    return written
