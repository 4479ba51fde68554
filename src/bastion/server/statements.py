"""Statements of the Statement Execution API: run in threads, waited on, polled, cancelled.

Bounded so that no principal can starve the others or exhaust the server:

- each statement holds a thread while it waits for a SQL worker and runs; a principal may
  have at most ``max_outstanding_per_principal`` statements running or waiting, and the
  server ``max_outstanding`` in all (there are that many threads, so the thread pool never
  queues): past either, ``submit`` raises ``RateLimited`` (429). Who runs next on the SQL
  workers is the engine's fair scheduler's decision, not this module's;
- results are kept for polling up to ``retained_result_bytes`` in all: past that the oldest
  results are released and their statements become ``CLOSED`` (as in Databricks, where a
  closed statement's result is no longer available).

``EXTERNAL_LINKS`` results are split into chunks of about ``chunk_bytes`` and fetched through
presigned links (:meth:`StatementManager.sign` / :meth:`~StatementManager.verify`): an HMAC,
under a key that exists only in this process, of the statement, the chunk, its owner and an
expiry — unguessable, bound to one chunk of one statement, and short-lived, like the
presigned cloud-storage URLs Databricks hands out (clients fetch them without credentials).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bastion.errors import BastionError, NotFound, PermissionDenied, RateLimited
from bastion.identity.model import Caller

# (caller, statement, parameters, row limit, byte limit, cancel event, external) -> a
# StatementResult; ``external``: the result goes out through EXTERNAL_LINKS (a larger cap).
Execute = Callable[[Caller, str, Any, int | None, int | None, threading.Event, bool], Any]


class StatementState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class Chunk:
    """One part of an EXTERNAL_LINKS result: rows ``[row_offset, row_offset + row_count)``."""

    index: int
    row_offset: int
    row_count: int
    byte_count: int


@dataclass
class Statement:
    statement_id: str
    principal_id: int
    result_format: str = "JSON_ARRAY"
    disposition: str = "INLINE"
    #: ``LZ4_FRAME`` where the client asked for compressed EXTERNAL_LINKS chunks.
    compression: str | None = None
    chunks: tuple[Chunk, ...] = ()
    state: StatementState = StatementState.PENDING
    result: Any = None
    result_bytes: int = 0
    error: BastionError | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    created: float = field(default_factory=time.monotonic)
    _callbacks: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread) once the statement is done, or now if it is."""
        self._callbacks.append(callback)
        if self.done.is_set():
            self._finish()

    def _finish(self) -> None:
        self.done.set()
        while self._callbacks:
            try:
                callback = self._callbacks.pop()
            except IndexError:  # another thread took the last one
                return
            callback()


class StatementManager:
    """Keeps the most recent statements (per server) so that clients can poll and cancel."""

    def __init__(
        self,
        execute: Execute,
        *,
        max_outstanding: int = 64,
        max_outstanding_per_principal: int = 8,
        retained_result_bytes: int = 256 * 1024 * 1024,
        keep: int = 1000,
        chunk_bytes: int = 8 * 1024 * 1024,
        link_ttl_s: int = 900,
    ) -> None:
        self._execute = execute
        self.chunk_bytes = chunk_bytes
        self.link_ttl_s = link_ttl_s
        self._link_key = os.urandom(32)  # links are valid only in this process, as results
        self._pool = ThreadPoolExecutor(
            max_workers=max_outstanding, thread_name_prefix="bastion-sql"
        )
        self._statements: OrderedDict[str, Statement] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()
        self._max_outstanding = max_outstanding
        self._per_principal = max_outstanding_per_principal
        self._outstanding: Counter[int] = Counter()
        self._retained: OrderedDict[str, Statement] = OrderedDict()  # oldest result first
        self._retained_bytes = 0
        self._retained_cap = retained_result_bytes

    def submit(
        self,
        caller: Caller,
        text: str,
        parameters: Any,
        row_limit: int | None,
        byte_limit: int | None = None,
        result_format: str = "JSON_ARRAY",
        *,
        disposition: str = "INLINE",
        compression: str | None = None,
    ) -> Statement:
        """Start a statement in the background; ``RateLimited`` when too many are pending."""
        statement = Statement(
            uuid.uuid4().hex, caller.principal_id, result_format, disposition, compression
        )
        principal = caller.principal_id
        with self._lock:
            mine = self._outstanding[principal]
            if mine >= self._per_principal:
                raise RateLimited(
                    f"You have {mine} SQL statements running or waiting, the most allowed per "
                    "user; wait for one to finish or cancel one, then retry."
                )
            if sum(self._outstanding.values()) >= self._max_outstanding:
                raise RateLimited(
                    f"The server is running or queueing {self._max_outstanding} SQL "
                    "statements, its limit; retry shortly."
                )
            self._outstanding[principal] += 1
            self._statements[statement.statement_id] = statement
            while len(self._statements) > self._keep:
                _, dropped = self._statements.popitem(last=False)
                self._release(dropped)
        self._pool.submit(self._run, statement, caller, text, parameters, row_limit, byte_limit)
        return statement

    def _run(
        self,
        statement: Statement,
        caller: Caller,
        text: str,
        parameters: Any,
        row_limit: int | None,
        byte_limit: int | None,
    ) -> None:
        try:
            if statement.cancel.is_set():
                if statement.state is not StatementState.CLOSED:
                    statement.state = StatementState.CANCELED
                return
            statement.state = StatementState.RUNNING
            try:
                result = self._execute(
                    caller,
                    text,
                    parameters,
                    row_limit,
                    byte_limit,
                    statement.cancel,
                    statement.disposition != "INLINE",
                )
            except BastionError as exc:
                if statement.state is not StatementState.CLOSED:
                    statement.error = exc
                    statement.state = (
                        StatementState.CANCELED
                        if statement.cancel.is_set()
                        else StatementState.FAILED
                    )
                return
            except Exception as exc:  # reported to the client as an internal error, not a trace
                statement.error = BastionError(f"The statement failed: {type(exc).__name__}.")
                statement.state = StatementState.FAILED
                return
            self._retain(statement, result)
        finally:
            with self._lock:
                self._outstanding[statement.principal_id] -= 1
                if self._outstanding[statement.principal_id] <= 0:
                    del self._outstanding[statement.principal_id]
            statement._finish()

    # -- retained results -------------------------------------------------------------------

    def _retain(self, statement: Statement, result: Any) -> None:
        """Keep ``result`` for polling; release the oldest others past the byte budget."""
        table = getattr(result, "table", None)
        size = int(getattr(table, "nbytes", 0))
        if statement.disposition != "INLINE" and table is not None:
            statement.chunks = split_chunks(table, self.chunk_bytes)
        with self._lock:
            if statement.state is StatementState.CLOSED:  # closed (DELETE) while it ran
                return
            statement.result = result
            statement.result_bytes = size
            statement.state = StatementState.SUCCEEDED
            if statement.statement_id not in self._statements:
                statement.result, statement.state = None, StatementState.CLOSED
                return
            self._retained[statement.statement_id] = statement
            self._retained_bytes += size
            while self._retained_bytes > self._retained_cap and len(self._retained) > 1:
                oldest = next(iter(self._retained.values()))
                self._release(oldest)
                oldest.state = StatementState.CLOSED

    def _release(self, statement: Statement) -> None:
        """Forget ``statement``'s result (lock held)."""
        if self._retained.pop(statement.statement_id, None) is not None:
            self._retained_bytes -= statement.result_bytes
        statement.result = None

    @property
    def retained_bytes(self) -> int:
        with self._lock:
            return self._retained_bytes

    # -- polling ----------------------------------------------------------------------------

    def get(self, caller: Caller, statement_id: str) -> Statement:
        with self._lock:
            statement = self._statements.get(statement_id)
        if statement is None or (
            statement.principal_id != caller.principal_id and not caller.is_admin
        ):
            raise NotFound(f"Statement '{statement_id}' does not exist.")
        return statement

    def cancel(self, caller: Caller, statement_id: str) -> Statement:
        statement = self.get(caller, statement_id)
        statement.cancel.set()
        if statement.state is StatementState.PENDING:
            statement.state = StatementState.CANCELED
        return statement

    def close_statement(self, caller: Caller, statement_id: str) -> None:
        """``DELETE /statements/{id}``: cancel it if it runs, release its result, and leave it
        ``CLOSED`` (a later GET says so)."""
        statement = self.get(caller, statement_id)
        statement.cancel.set()
        with self._lock:
            self._release(statement)
            if statement.state in (StatementState.PENDING, StatementState.RUNNING):
                statement.error = None
            statement.state = StatementState.CLOSED

    # -- presigned chunk links --------------------------------------------------------------

    def _signature(self, statement: Statement, chunk_index: int, expires: int) -> str:
        message = f"{statement.statement_id}\n{chunk_index}\n{statement.principal_id}\n{expires}"
        return hmac.new(self._link_key, message.encode(), hashlib.sha256).hexdigest()

    def sign(self, statement: Statement, chunk_index: int) -> tuple[int, str]:
        """``(expires, signature)`` for a link to one chunk, valid ``link_ttl_s`` seconds."""
        expires = int(time.time()) + self.link_ttl_s
        return expires, self._signature(statement, chunk_index, expires)

    def verify(
        self, statement_id: str, chunk_index: int, expires: int, signature: str
    ) -> Statement:
        """The statement a presigned link names, if the link is genuine and not expired;
        ``PermissionDenied`` otherwise (the same answer for every reason)."""
        with self._lock:
            statement = self._statements.get(statement_id)
        denied = PermissionDenied("The result link is invalid or has expired.")
        if statement is None or expires < time.time():
            raise denied
        expected = self._signature(statement, chunk_index, expires).encode()
        # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
        if not hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass")):
            raise denied
        return statement

    def close(self) -> None:
        with self._lock:
            for statement in self._statements.values():
                statement.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


def split_chunks(table: Any, chunk_bytes: int) -> tuple[Chunk, ...]:
    """Row ranges of about ``chunk_bytes`` Arrow bytes each; one (maybe empty) at least."""
    rows = table.num_rows
    per_chunk = max(1, rows * chunk_bytes // max(int(table.nbytes), 1))
    chunks = []
    for index, offset in enumerate(range(0, max(rows, 1), per_chunk)):
        count = min(per_chunk, rows - offset)
        chunks.append(Chunk(index, offset, count, int(table.slice(offset, count).nbytes)))
    return tuple(chunks)
