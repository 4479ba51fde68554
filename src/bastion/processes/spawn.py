"""Starting a supervised child under its guard, tied to the server's lifeline."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from bastion.processes.proc import boot_id, start_ticks
from bastion.processes.records import ProcessRecord, ProcessRegistry


class Lifeline:
    """A pipe whose write end only this process holds: its end-of-file tells every guard
    that the server is gone. One per server process."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()  # both non-inheritable by default
        self.owner_pid = os.getpid()

    def close(self) -> None:
        for fd in (self.read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def spawn(
    argv: Sequence[str],
    *,
    kind: str,
    key: str,
    lifeline: Lifeline,
    registry: ProcessRegistry | None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log: IO[bytes] | None = None,
    grace_s: float = 5.0,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` under a guard in a new session and record it.

    The returned process is the guard: it is the process group's leader, exits with the
    child's exit code, and ``os.killpg(process.pid, ...)`` reaches the whole group.
    """
    tag = f"bastion-guard-{uuid.uuid4().hex}"
    command = [
        sys.executable,
        "-m",
        "bastion.processes.guard",
        "--lifeline",
        str(lifeline.read_fd),
        "--tag",
        tag,
        "--grace",
        str(grace_s),
        "--",
        *argv,
    ]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        pass_fds=(lifeline.read_fd,),
        start_new_session=True,
    )
    if registry is not None:
        ticks = start_ticks(process.pid)
        owner_ticks = start_ticks(lifeline.owner_pid)
        if ticks is not None and owner_ticks is not None:
            registry.record(
                ProcessRecord(
                    key=key,
                    kind=kind,
                    pid=process.pid,
                    start_ticks=ticks,
                    boot_id=boot_id(),
                    tag=tag,
                    owner_pid=lifeline.owner_pid,
                    owner_start_ticks=owner_ticks,
                )
            )
    return process
