"""One job's result as a worker sends it back: the schema, then record batches, read
with a length cap and watched for the deadline, cancellation and the worker's death."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pyarrow as pa

from bastion.errors import (
    BastionError,
    DeadlineExceeded,
    InvalidRequest,
    ResourceExhausted,
    StatementCanceled,
)
from bastion.query import protocol
from bastion.query.processes import (
    CONTROL_FRAME_BYTES,
    PoolConfig,
    WorkerProcess,
    control_values,
    decode,
)
from bastion.query.protocol import Job
from bastion.tables.storage import StorageUnavailable

logger = logging.getLogger(__name__)

_POLL_S = 0.05


class QueryFailed(InvalidRequest):
    """DuckDB refused the statement; ``message`` is DuckDB's, with internal names."""


class _Gone(Exception):
    """The worker stopped answering (died, or ignored an interrupt and was killed)."""


class ResultStream:
    """One job's result as the worker sends it: ``schema``, then record batches.

    Iterate it once. Afterwards ``rows`` is the number of rows received, ``truncated`` says
    whether ``max_rows`` cut rows off and ``exceeded`` whether ``max_bytes`` did.
    """

    def __init__(
        self,
        worker: WorkerProcess,
        job: Job,
        *,
        deadline: float,
        timeout_s: float,
        cancel: threading.Event | None,
        config: PoolConfig,
    ) -> None:
        self._worker = worker
        self._job = job
        self._deadline = deadline
        self._timeout_s = timeout_s
        self._cancel = cancel
        self._config = config
        self._reason: str | None = None  # why the worker was interrupted
        self._grace_until = 0.0
        self._finished = False  # END or ERROR received: the worker is idle again
        self._recycle = False
        self.schema = pa.schema([])
        self.rows = 0
        self.bytes = 0
        self.truncated = False
        self.exceeded = False
        limit = job.max_bytes if job.max_bytes is not None else protocol.MAX_FRAME_BYTES
        self._max_frame = min(limit, protocol.MAX_FRAME_BYTES) + CONTROL_FRAME_BYTES

    # -- protocol ---------------------------------------------------------------------------

    def _stop(self, reason: str) -> None:
        self._reason = reason
        self._grace_until = time.monotonic() + self._config.grace_s
        self._worker.interrupt(self._job.job_id)

    def _read(self) -> tuple[bytes, memoryview]:
        """The next frame, interrupting the worker at the deadline or on cancel."""
        while True:
            now = time.monotonic()
            if self._reason is None:
                if self._cancel is not None and self._cancel.is_set():
                    self._stop("cancel")
                elif now >= self._deadline:
                    self._stop("timeout")
            if self._reason is not None:
                wait = self._grace_until - now
                if wait <= 0:
                    self._worker.kill()
                    raise _Gone(
                        f"the SQL worker did not stop within {self._config.grace_s:g} s and "
                        "was replaced"
                    )
            else:
                wait = self._deadline - now
                if self._cancel is not None:
                    wait = min(wait, _POLL_S)
            try:
                if self._worker.conn.poll(max(wait, 0.0)):
                    return decode(self._worker.conn.recv_bytes(self._max_frame))
            except (EOFError, OSError):
                self._worker.kill()
                raise _Gone(self._worker.exit_description()) from None

    def _frame(self) -> tuple[bytes, memoryview]:
        try:
            return self._read()
        except _Gone as gone:
            self._finished = True
            raise self._stopped_error(str(gone)) from None

    def _unexpected(self) -> BastionError:
        self._finished = True
        self._worker.kill()
        return BastionError("A SQL worker sent an unexpected reply; it was replaced.")

    def _last(self, kind: bytes, payload: memoryview) -> None:
        """The job's last frame: END returns, ERROR raises the statement's error."""
        if kind not in (protocol.END, protocol.ERROR):
            raise self._unexpected()
        self._finished = True
        body = control_values(payload)
        self._worker.vm = int(body.get("vm", 0))
        if kind == protocol.ERROR:
            raise self._error(str(body.get("kind")), str(body.get("message", "")))
        self.truncated = bool(body.get("truncated"))
        self.exceeded = bool(body.get("exceeded"))

    def _next(self) -> pa.RecordBatch | None:
        """The next batch; ``None`` at the end. Raises the statement's error."""
        kind, payload = self._frame()
        if kind != protocol.BATCH:
            self._last(kind, payload)
            return None
        try:
            batch = pa.ipc.read_record_batch(pa.py_buffer(payload), self.schema)
        except (pa.ArrowException, ValueError):
            raise self._unexpected() from None
        self.rows += batch.num_rows
        self.bytes += len(payload)
        return batch

    def _error(self, kind: str, message: str) -> BastionError:
        if kind == protocol.INTERRUPTED or self._reason in ("timeout", "cancel"):
            return self._stopped_error("")
        if kind == protocol.OOM:
            self._recycle = True
            return ResourceExhausted(
                "The statement needed more memory than a SQL worker allows "
                f"({self._config.memory_limit_mb} MiB for its operators, "
                f"{self._config.address_space_mb} MiB of address space in all) and was "
                "stopped; aggregate or filter more, or select fewer or shorter values."
            )
        if kind == protocol.TOO_LARGE:
            return ResourceExhausted(message)
        if kind == protocol.INVALID:
            return QueryFailed(message)
        if kind == protocol.UNAVAILABLE:  # the detail names the endpoint and bucket: log only
            logger.warning("a SQL worker could not read the table storage: %s", message)
            return StorageUnavailable(
                "Could not read the table: the table storage is not reachable now; "
                "try again shortly."
            )
        return BastionError(f"The SQL worker failed: {message}")

    def _stopped_error(self, lost: str) -> BastionError:
        suffix = f" ({lost})" if lost else ""
        if self._reason == "cancel":
            return StatementCanceled("The statement was cancelled." + suffix)
        if self._reason == "timeout":
            return DeadlineExceeded(
                f"The statement ran longer than its {self._timeout_s:g} s timeout and was "
                f"cancelled; narrow the query or raise the timeout.{suffix}"
            )
        if lost:
            return ResourceExhausted(
                f"The SQL worker running this statement stopped unexpectedly ({lost}), most "
                "likely because the statement needed more memory than the machine could give; "
                "it has been replaced. Narrow the query and try again."
            )
        return BastionError("The SQL worker stopped the statement unexpectedly.")

    # -- public -----------------------------------------------------------------------------

    def open(self) -> None:
        """Wait for the result's schema (or the statement's error)."""
        kind, payload = self._frame()
        if kind != protocol.SCHEMA:
            self._last(kind, payload)
            return
        try:
            self.schema = protocol.read_schema(payload)
        except (pa.ArrowException, ValueError):
            raise self._unexpected() from None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while not self._finished:
            batch = self._next()
            if batch is None:
                return
            yield batch

    def close(self) -> bool:
        """Finish the job (interrupting it if unread); whether the worker may run another."""
        if not self._finished and self._worker.alive():
            if self._reason is None:
                self._stop("abandon")
            try:
                while True:
                    kind, _ = self._read()
                    if kind in (protocol.END, protocol.ERROR):
                        break
            except _Gone:
                return False
        return (
            self._worker.alive()
            and not self._recycle
            and self._worker.vm <= self._config.recycle_vm_bytes
        )
