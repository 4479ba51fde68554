"""Statements of the Statement Execution API: run in a pool, waited on, polled, cancelled."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bastion.errors import BastionError, NotFound
from bastion.identity.model import Caller

# (caller, statement, parameters, row limit, cancel event) -> a query StatementResult
Execute = Callable[[Caller, str, Any, int | None, threading.Event], Any]


class StatementState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    CLOSED = "CLOSED"


@dataclass
class Statement:
    statement_id: str
    principal_id: int
    text: str
    result_format: str = "JSON_ARRAY"
    state: StatementState = StatementState.PENDING
    result: Any = None
    error: BastionError | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    created: float = field(default_factory=time.monotonic)


class StatementManager:
    """Keeps the most recent statements (per server) so that clients can poll and cancel."""

    def __init__(self, execute: Execute, *, workers: int = 4, keep: int = 1000) -> None:
        self._execute = execute
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bastion-sql")
        self._statements: OrderedDict[str, Statement] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def submit(
        self,
        caller: Caller,
        text: str,
        parameters: Any,
        row_limit: int | None,
        wait_s: float,
        result_format: str = "JSON_ARRAY",
    ) -> Statement:
        statement = Statement(uuid.uuid4().hex, caller.principal_id, text, result_format)
        with self._lock:
            self._statements[statement.statement_id] = statement
            while len(self._statements) > self._keep:
                self._statements.popitem(last=False)
        self._pool.submit(self._run, statement, caller, parameters, row_limit)
        statement.done.wait(wait_s)
        return statement

    def _run(
        self, statement: Statement, caller: Caller, parameters: Any, limit: int | None
    ) -> None:
        if statement.cancel.is_set():
            statement.state = StatementState.CANCELED
            statement.done.set()
            return
        statement.state = StatementState.RUNNING
        try:
            statement.result = self._execute(
                caller, statement.text, parameters, limit, statement.cancel
            )
            statement.state = StatementState.SUCCEEDED
        except BastionError as exc:
            statement.error = exc
            statement.state = (
                StatementState.CANCELED if statement.cancel.is_set() else StatementState.FAILED
            )
        except Exception as exc:  # reported to the client as an internal error, not a trace
            statement.error = BastionError(f"The statement failed: {type(exc).__name__}.")
            statement.state = StatementState.FAILED
        finally:
            statement.done.set()

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

    def close(self) -> None:
        with self._lock:
            for statement in self._statements.values():
                statement.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
