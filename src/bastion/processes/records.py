"""Records of supervised children under ``BASTION_HOME/run/``, and reaping a predecessor's."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bastion.processes.proc import boot_id, command_line, group_members, rss_bytes, start_ticks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessRecord:
    """Who a supervised child is, precisely enough to recognise it (and only it) later."""

    key: str
    kind: str
    pid: int  # the guard, leader of the child's process group
    start_ticks: int
    boot_id: str
    tag: str  # random, on the guard's command line
    owner_pid: int
    owner_start_ticks: int

    def is_alive_and_ours(self) -> bool:
        """The recorded process still runs — same boot, same start time, same tag — and is
        not some other process that happens to have the pid now."""
        return (
            self.boot_id == boot_id()
            and start_ticks(self.pid) == self.start_ticks
            and self.tag in command_line(self.pid)
        )

    def owner_alive(self) -> bool:
        return self.boot_id == boot_id() and start_ticks(self.owner_pid) == self.owner_start_ticks


def process_memory(pid: int) -> int:
    """Resident bytes of a process group led by ``pid`` (the guard and its worker)."""
    return sum(rss_bytes(member) for member in group_members(pid)) or rss_bytes(pid)


class ProcessRegistry:
    """One file per live child; written when it starts, removed when it is stopped."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, kind: str, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{kind}-{key}")
        return self.directory / f"{safe}.json"

    def record(self, record: ProcessRecord) -> None:
        path = self._path(record.kind, record.key)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(asdict(record)))
        partial.replace(path)

    def forget(self, kind: str, key: str, pid: int | None = None) -> None:
        path = self._path(kind, key)
        if pid is not None:
            current = self._load(path)
            if current is not None and current.pid != pid:
                return  # a newer process of the same key has been recorded meanwhile
        path.unlink(missing_ok=True)

    def records(self) -> list[ProcessRecord]:
        return [r for p in sorted(self.directory.glob("*.json")) if (r := self._load(p))]

    @staticmethod
    def _load(path: Path) -> ProcessRecord | None:
        try:
            return ProcessRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def reap_orphans(self, grace_s: float = 5.0) -> list[ProcessRecord]:
        """Stop what a dead predecessor left running; return what was stopped.

        A record whose owner still runs belongs to a live server and is left alone; a record
        whose process is gone, or is now somebody else's (a reused pid), is only deleted.
        """
        stopped = []
        for record in self.records():
            path = self._path(record.kind, record.key)
            if record.owner_alive():  # a live server's (this one's included): not ours to stop
                continue
            if record.is_alive_and_ours():
                logger.warning(
                    "stopping %s %s (pid %d) left by a server that is gone",
                    record.kind,
                    record.key,
                    record.pid,
                )
                terminate_group(record.pid, grace_s)
                stopped.append(record)
            path.unlink(missing_ok=True)
        return stopped


def terminate_group(pgid: int, grace_s: float) -> None:
    """SIGTERM a process group, then SIGKILL what is left after ``grace_s``."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and group_members(pgid):
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
