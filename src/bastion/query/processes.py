"""SQL worker processes: how one is started, talked to, interrupted and killed.

:func:`spawn` starts ``python -I -c <boot>`` running :mod:`bastion.query.sqlworker` with two
descriptors: a socket for jobs and results, and the read end of a *control pipe* whose write
end only the server holds (interrupts go through it; when it closes the worker exits).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import Unavailable
from bastion.query import protocol
from bastion.query.protocol import INTERRUPT, Job, WorkerConfig

if TYPE_CHECKING:
    from bastion.settings import Settings

_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from bastion.query.sqlworker import main; main(sys.argv[2:])"
)
# Arrow's C++ code allocates from mimalloc, which by default reserves address space in 1 GiB
# arenas (a worker's address space grows by ~1 GiB at its first dataset scan):
# 64 MiB arenas keep it close to what is used, so that RLIMIT_AS bounds data, not reserves.
# (The system allocator would too, but scans Parquet ~1.5 ms slower per small statement.)
_ARROW_ALLOCATOR = {"MIMALLOC_ARENA_RESERVE": "64MiB"}
MIB = 1024 * 1024
CONTROL_FRAME_BYTES = 1024 * 1024


@dataclass(frozen=True)
class PoolConfig:
    workers: int = 3
    threads: int = 2
    memory_limit_mb: int = 768
    address_space_mb: int = 2304
    per_principal: int = 2
    grace_s: float = 5.0
    start_timeout_s: float = 60.0
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False)
    """delta-rs options of the table storage (credentials): sent over the job pipe, never on
    a command line or in the environment."""

    @classmethod
    def from_settings(
        cls, settings: Settings, storage_options: Mapping[str, str] | None = None
    ) -> PoolConfig:
        return cls(
            workers=settings.sql_workers,
            threads=settings.sql_worker_threads,
            memory_limit_mb=settings.sql_worker_memory_limit_mb,
            address_space_mb=settings.sql_worker_address_space_mb,
            per_principal=settings.sql_max_running_per_principal,
            grace_s=settings.sql_worker_grace_s,
            storage_options=dict(storage_options or {}),
        )

    @property
    def recycle_vm_bytes(self) -> int:
        """A worker whose address space exceeds this cannot fit another full statement."""
        return (self.address_space_mb - self.memory_limit_mb) * MIB


class WorkerProcess:
    """One started worker: its process, its socket and the write end of its control pipe."""

    def __init__(self, process: subprocess.Popen[bytes], conn: Connection, control: int) -> None:
        self.process = process
        self.conn = conn
        self._control = control
        self._control_lock = threading.Lock()
        self.baseline_vm = 0
        self.vm = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def idle_and_alive(self) -> bool:
        """Alive, and nothing (such as the end of file of a dead worker) waits to be read."""
        try:
            return self.alive() and not self.conn.poll(0)
        except (OSError, EOFError):
            return False

    def start(self, job: Job, ack_timeout_s: float) -> bool:
        """Send ``job``; whether the worker acknowledged it (if not, it is killed: a worker
        that dies before acknowledging a job never started it)."""
        try:
            self.conn.send(job)
            if self.conn.poll(ack_timeout_s):
                kind, payload = decode(self.conn.recv_bytes(CONTROL_FRAME_BYTES))
                if kind == protocol.ACK and control_values(payload).get("job") == job.job_id:
                    return True
        except (OSError, EOFError):
            pass
        self.kill()
        return False

    def interrupt(self, job_id: int) -> None:
        with self._control_lock, suppress(OSError):
            if self._control >= 0:
                os.write(self._control, INTERRUPT.pack(job_id))

    def close_control(self) -> None:
        """Close the server's end of the control pipe: the worker exits when it sees that."""
        with self._control_lock, suppress(OSError):
            if self._control >= 0:
                os.close(self._control)
            self._control = -1

    def kill(self) -> None:
        with suppress(OSError):
            self.process.kill()
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        self.conn.close()
        self.close_control()

    def exit_description(self) -> str:
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)
        code = self.process.returncode
        if code is None:
            return "it stopped answering"
        if code < 0:
            with suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
            return f"killed by signal {-code}"
        return f"exit status {code}"


def decode(data: bytes) -> tuple[bytes, memoryview]:
    view = memoryview(data)
    return bytes(view[:1]), view[1:]


def control_values(payload: memoryview) -> dict[str, Any]:
    try:
        value = json.loads(bytes(payload))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def spawn(config: PoolConfig) -> WorkerProcess:
    """Start one worker and wait until it is ready (runs on the pool's spawner thread)."""
    parent, child = multiprocessing.Pipe(duplex=True)
    control_r, control_w = os.pipe()
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-c",
                _BOOT,
                _ROOT,
                str(child.fileno()),
                str(control_r),
                str(os.getpid()),
            ],
            pass_fds=(child.fileno(), control_r),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env={**os.environ, **_ARROW_ALLOCATOR},
        )
    except BaseException:
        parent.close()
        os.close(control_w)
        raise
    finally:
        child.close()
        os.close(control_r)
    worker = WorkerProcess(process, parent, control_w)
    try:
        parent.send(
            WorkerConfig(
                memory_limit_mb=config.memory_limit_mb,
                threads=config.threads,
                address_space_mb=config.address_space_mb,
                storage_options=dict(config.storage_options),
            )
        )
        if not parent.poll(config.start_timeout_s):
            raise Unavailable("A SQL worker did not start in time; try again shortly.")
        kind, payload = decode(parent.recv_bytes(CONTROL_FRAME_BYTES))
        body = control_values(payload)
        if kind != protocol.READY:
            raise Unavailable(f"A SQL worker could not start: {body.get('message', kind)}")
        worker.baseline_vm = worker.vm = int(body.get("vm", 0))
        return worker
    except (EOFError, OSError):
        worker.kill()
        raise Unavailable(
            f"A SQL worker could not start ({worker.exit_description()}); see the server log."
        ) from None
    except BaseException:
        worker.kill()
        raise
