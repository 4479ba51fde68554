"""The Statement Execution API (``/api/2.0/sql/statements``), in Databricks' shape.

INLINE results only: ``row_limit`` and ``byte_limit`` truncate a result (``manifest.truncated``),
one larger than the engine's INLINE cap fails with ``RESOURCE_EXHAUSTED``. Bodies with rows
are streamed, a slice of rows at a time. Waiting for a statement (``wait_timeout``) holds no
thread.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
from collections.abc import Iterator
from contextlib import suppress
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
import pyarrow as pa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import InvalidRequest, ResourceExhausted
from bastion.identity.model import Caller
from bastion.server.auth import authenticated
from bastion.server.statements import Statement, StatementManager, StatementState

router = APIRouter(prefix="/api/2.0/sql", tags=["databrickssql"])
sql_scope = authenticated("sql")
_WAIT = re.compile(r"^(\d+)s$")
_CANCEL_WAIT_S = 5.0


class StatementParameter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    value: str | None = None
    type: str | None = Field(default=None, max_length=64)


class ExecuteStatement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statement: str = Field(min_length=1, max_length=1_000_000)
    warehouse_id: str | None = None  # accepted and ignored: there is one built-in engine
    catalog: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    parameters: list[StatementParameter] | None = Field(default=None, max_length=1000)
    wait_timeout: str = "10s"
    on_wait_timeout: Literal["CONTINUE", "CANCEL"] = "CONTINUE"
    format: Literal["JSON_ARRAY", "ARROW_STREAM"] = "JSON_ARRAY"
    disposition: Literal["INLINE"] = "INLINE"
    row_limit: int | None = Field(default=None, ge=0)
    byte_limit: int | None = Field(default=None, ge=0)


def manager(request: Request) -> StatementManager:
    statements: StatementManager = request.app.state.statements
    return statements


def _wait_seconds(text: str) -> int:
    match = _WAIT.match(text)
    seconds = int(match.group(1)) if match else -1
    if not (seconds == 0 or 5 <= seconds <= 50):
        raise InvalidRequest("wait_timeout must be 0s or between 5s and 50s, e.g. '10s'.")
    return seconds


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | int | float | str):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return json.dumps(value, default=str)


# Rows are rendered a slice at a time, each about this many Arrow bytes, so that the Python
# objects of a whole result never exist at once (a 25 MiB result of small values would be
# tens of millions of them).
_SLICE_BYTES = 256 * 1024


def _slices(table: pa.Table) -> Iterator[pa.RecordBatch]:
    rows = max(1, table.num_rows * _SLICE_BYTES // max(table.nbytes, 1))
    yield from table.to_batches(max_chunksize=rows)


def _json_rows(table: pa.Table) -> Iterator[bytes]:
    yield b'"data_array":['
    first = True
    for batch in _slices(table):
        columns = [column.to_pylist() for column in batch.columns]
        if columns:
            rows = [[_cell(v) for v in row] for row in zip(*columns, strict=True)]
        else:
            rows = [[] for _ in range(batch.num_rows)]
        if rows:
            yield (b"" if first else b",") + orjson.dumps(rows)[1:-1]
            first = False
    yield b"]"


class _Chunks:
    """A file-like sink the Arrow IPC writer writes to; what it got is taken by ``take``."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        return len(chunk)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def _arrow_attachment(table: pa.Table) -> Iterator[bytes]:
    """The result as an Arrow IPC stream, base64-encoded a slice at a time."""
    yield b'"attachment":"'
    sink = _Chunks()
    carry = b""
    writer = pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema)
    for batch in [*_slices(table), None]:
        if batch is None:
            writer.close()
        else:
            writer.write_batch(batch)
        data = carry + sink.take()
        cut = len(data) - len(data) % 3
        carry = data[cut:]
        if cut:
            yield base64.b64encode(data[:cut])
    if carry:
        yield base64.b64encode(carry)
    yield b'"'


def _status(statement: Statement) -> tuple[dict[str, Any], Any]:
    """The statement's JSON head and its result (``None`` unless there is one to send)."""
    result = statement.result
    state = statement.state
    if state is StatementState.SUCCEEDED and result is None:
        state = StatementState.CLOSED  # released between the two reads
    body: dict[str, Any] = {
        "statement_id": statement.statement_id,
        "status": {"state": state.value},
    }
    error = statement.error
    if error is None and state is StatementState.CLOSED:
        error = CLOSED_ERROR
    if error is not None:
        body["status"]["error"] = {"error_code": error.error_code, "message": error.message}
    return body, result if state is StatementState.SUCCEEDED else None


CLOSED_ERROR = ResourceExhausted(
    "The statement's result is no longer kept (the server releases the oldest results to "
    "bound its memory); run the statement again."
)


def _chunk_head(table: pa.Table) -> dict[str, Any]:
    return {"chunk_index": 0, "row_offset": 0, "row_count": table.num_rows}


def _open_object(value: dict[str, Any], closers: int) -> bytes:
    """``value`` as JSON without its last ``closers`` closing braces, then a comma."""
    text = orjson.dumps(value)
    assert text.endswith(b"}" * closers)
    return text[:-closers] + b","


def _chunk_body(table: pa.Table, result_format: str, closers: int) -> Iterator[bytes]:
    if result_format == "ARROW_STREAM":
        yield from _arrow_attachment(table)
    else:
        yield from _json_rows(table)
    yield b"}" * closers


def render(statement: Statement) -> Response:
    """The statement as Databricks returns it; a result is streamed, a slice at a time."""
    body, result = _status(statement)
    if result is None:
        return JSONResponse(body)
    table: pa.Table = result.table
    body["manifest"] = {
        "format": statement.result_format,
        "schema": {
            "column_count": len(result.columns),
            "columns": [
                {
                    "name": c.name,
                    "type_text": c.type_text,
                    "type_name": c.type_name,
                    "position": c.position,
                }
                for c in result.columns
            ],
        },
        "total_chunk_count": 1,
        "chunks": [_chunk_head(table)],
        "total_row_count": table.num_rows,
        "truncated": result.truncated,
    }
    body["result"] = _chunk_head(table)
    head = _open_object(body, 2)
    return StreamingResponse(
        itertools.chain([head], _chunk_body(table, statement.result_format, 2)),
        media_type="application/json",
    )


async def _wait(statement: Statement, seconds: float) -> None:
    """Wait until ``statement`` is done or ``seconds`` pass, holding no thread meanwhile."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()

    def wake() -> None:
        with suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(finished.set)

    statement.on_done(wake)
    with suppress(TimeoutError):
        await asyncio.wait_for(finished.wait(), seconds)


@router.post("/statements", name="execute_statement")
async def execute_statement(
    request: Request, body: ExecuteStatement, caller: Caller = Depends(sql_scope)
) -> Response:
    wait = _wait_seconds(body.wait_timeout)
    request.state.audit_params = {"statement": body.statement[:1000]}
    parameters = [p.model_dump() for p in body.parameters] if body.parameters else None
    statements = manager(request)
    statement = statements.submit(
        caller, body.statement, parameters, body.row_limit, body.byte_limit, body.format
    )
    if wait:
        await _wait(statement, wait)
    if not statement.done.is_set() and body.on_wait_timeout == "CANCEL":
        statement = statements.cancel(caller, statement.statement_id)
        await _wait(statement, _CANCEL_WAIT_S)  # the worker stops within ~50 ms
    if statement.error is not None:
        request.state.error_message = statement.error.message
    return render(statement)


@router.get("/statements/{statement_id}", name="get_statement")
def get_statement(
    request: Request, statement_id: str, caller: Caller = Depends(sql_scope)
) -> Response:
    statement = manager(request).get(caller, statement_id)
    return render(statement)


@router.get("/statements/{statement_id}/result/chunks/{chunk_index}", name="get_statement_result")
def get_chunk(
    request: Request, statement_id: str, chunk_index: int, caller: Caller = Depends(sql_scope)
) -> Response:
    statement = manager(request).get(caller, statement_id)
    _, result = _status(statement)
    if chunk_index != 0 or result is None:
        if statement.state is StatementState.CLOSED:
            raise InvalidRequest(
                f"Statement '{statement_id}' is CLOSED: its result is no longer kept; run the "
                "statement again."
            )
        raise InvalidRequest(f"No result chunk {chunk_index} for statement '{statement_id}'.")
    table: pa.Table = result.table
    head = _open_object(_chunk_head(table), 1)
    return StreamingResponse(
        itertools.chain([head], _chunk_body(table, statement.result_format, 1)),
        media_type="application/json",
    )


@router.post("/statements/{statement_id}/cancel", name="cancel_statement")
def cancel_statement(
    request: Request, statement_id: str, caller: Caller = Depends(sql_scope)
) -> dict[str, Any]:
    manager(request).cancel(caller, statement_id)
    return {}
