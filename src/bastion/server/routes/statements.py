"""The Statement Execution API (``/api/2.0/sql/statements``, ``/sessions``), in Databricks'
shape.

``INLINE`` results come in the body; ``EXTERNAL_LINKS`` (and ``INLINE_OR_EXTERNAL_LINKS``)
results as chunks behind presigned links back to this server (``…/chunks/{i}/data``; see
:mod:`bastion.server.statements`), optionally LZ4-framed. ``row_limit`` and ``byte_limit``
truncate a result (``manifest.truncated``); one larger than the disposition's cap fails with
``RESOURCE_EXHAUSTED``. Bodies with rows are streamed, a slice of rows at a time. Waiting for
a statement (``wait_timeout``) holds no thread. Statement errors carry the SDK's
``ServiceErrorCode`` values, and Bastion's own code as ``bastion_error_code``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import lz4.frame
import orjson
import pyarrow as pa
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as Path_
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import BastionError, InvalidRequest, NotFound, ResourceExhausted
from bastion.identity.model import Caller
from bastion.server.auth import authenticated
from bastion.server.sql_sessions import SessionStore, check_defaults
from bastion.server.statements import Chunk, Statement, StatementManager, StatementState

router = APIRouter(prefix="/api/2.0/sql", tags=["databrickssql"])
sql_scope = authenticated("sql")
_WAIT = re.compile(r"^(\d+)s$")
_CANCEL_WAIT_S = 5.0


class StatementParameter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    value: str | None = None
    type: str | None = Field(default=None, max_length=64)


class QueryTag(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=128)
    value: str | None = Field(default=None, max_length=256)


class ExecuteStatement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statement: str = Field(min_length=1, max_length=1_000_000)
    warehouse_id: str | None = Field(default=None, max_length=256)  # one built-in engine
    session_id: str | None = Field(default=None, max_length=64)
    catalog: str | None = Field(default=None, max_length=255)
    schema_: str | None = Field(default=None, alias="schema", max_length=255)
    parameters: list[StatementParameter] | None = Field(default=None, max_length=1000)
    wait_timeout: str = "10s"
    on_wait_timeout: Literal["CONTINUE", "CANCEL"] = "CONTINUE"
    format: Literal["JSON_ARRAY", "ARROW_STREAM"] = "JSON_ARRAY"
    disposition: Literal["INLINE", "EXTERNAL_LINKS", "INLINE_OR_EXTERNAL_LINKS"] = "INLINE"
    result_compression: Literal["LZ4_FRAME", "NONE"] | None = None
    row_limit: int | None = Field(default=None, ge=0, le=2**63 - 1)
    byte_limit: int | None = Field(default=None, ge=0, le=2**63 - 1)
    query_tags: list[QueryTag] | None = Field(default=None, max_length=20)


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warehouse_id: str | None = Field(default=None, max_length=256)
    catalog: str | None = Field(default=None, max_length=255)
    schema_: str | None = Field(default=None, alias="schema", max_length=255)
    session_confs: dict[str, str] | None = Field(default=None, max_length=64)


def manager(request: Request) -> StatementManager:
    statements: StatementManager = request.app.state.statements
    return statements


def sessions(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.sql_sessions
    return store


# Bastion's error codes as the SDK's ``ServiceErrorCode`` (what a statement's status carries).
_SERVICE_CODES = {
    "INVALID_PARAMETER_VALUE": "BAD_REQUEST",
    "MALFORMED_REQUEST": "BAD_REQUEST",
    "BAD_REQUEST": "BAD_REQUEST",
    "PERMISSION_DENIED": "BAD_REQUEST",
    "RESOURCE_CONFLICT": "BAD_REQUEST",
    "RESOURCE_DOES_NOT_EXIST": "NOT_FOUND",
    "RESOURCE_ALREADY_EXISTS": "ALREADY_EXISTS",
    "RESOURCE_EXHAUSTED": "RESOURCE_EXHAUSTED",
    "REQUEST_LIMIT_EXCEEDED": "RESOURCE_EXHAUSTED",
    "DEADLINE_EXCEEDED": "DEADLINE_EXCEEDED",
    "CANCELLED": "CANCELLED",
    "TEMPORARILY_UNAVAILABLE": "TEMPORARILY_UNAVAILABLE",
    "UNAUTHENTICATED": "UNAUTHENTICATED",
}


def service_error(error: BastionError) -> dict[str, str]:
    """A statement's ``status.error``: ``error_code`` is one of the SDK's ``ServiceErrorCode``
    values (what Databricks sends; the SDK drops any other), ``bastion_error_code`` Bastion's
    own, more precise one (``PERMISSION_DENIED``, ``INVALID_PARAMETER_VALUE``, …)."""
    return {
        "error_code": _SERVICE_CODES.get(error.error_code, "INTERNAL_ERROR"),
        "message": error.message,
        "bastion_error_code": error.error_code,
    }


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
        body["status"]["error"] = service_error(error)
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


_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$", re.IGNORECASE)


def _column(column: Any) -> dict[str, Any]:
    """One ``manifest.schema.columns`` entry; decimals also give ``type_precision`` and
    ``type_scale``, which clients need to rebuild them."""
    out: dict[str, Any] = {
        "name": column.name,
        "type_text": column.type_text,
        "type_name": column.type_name,
        "position": column.position,
    }
    decimal = _DECIMAL.match(column.type_text)
    if decimal:
        out["type_precision"], out["type_scale"] = int(decimal[1]), int(decimal[2])
    return out


def _columns(result: Any) -> dict[str, Any]:
    return {"column_count": len(result.columns), "columns": [_column(c) for c in result.columns]}


def render(statement: Statement, links: ChunkLinks | None = None) -> Response:
    """The statement as Databricks returns it; a result is streamed, a slice at a time
    (or, for EXTERNAL_LINKS, described by its chunks, the first one's link in ``result``)."""
    body, result = _status(statement)
    if result is None:
        return JSONResponse(body)
    table: pa.Table = result.table
    if statement.disposition != "INLINE":
        assert links is not None
        body["manifest"] = {
            "format": statement.result_format,
            "schema": _columns(result),
            "total_chunk_count": len(statement.chunks),
            "chunks": [_chunk_info(c) for c in statement.chunks],
            "total_row_count": table.num_rows,
            "total_byte_count": sum(c.byte_count for c in statement.chunks),
            "truncated": result.truncated,
        }
        if statement.compression:
            body["manifest"]["result_compression"] = statement.compression
        body["result"] = {"external_links": [links.link(statement, statement.chunks[0])]}
        return JSONResponse(body)
    body["manifest"] = {
        "format": statement.result_format,
        "schema": _columns(result),
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


def _chunk_info(chunk: Chunk) -> dict[str, int]:
    return {
        "chunk_index": chunk.index,
        "row_offset": chunk.row_offset,
        "row_count": chunk.row_count,
        "byte_count": chunk.byte_count,
    }


class ChunkLinks:
    """Presigned links to a statement's chunks, on the base URL the client called."""

    def __init__(self, request: Request) -> None:
        self._base = str(request.base_url).rstrip("/")
        self._manager = manager(request)

    def link(self, statement: Statement, chunk: Chunk) -> dict[str, Any]:
        expires, signature = self._manager.sign(statement, chunk.index)
        url = (
            f"{self._base}/api/2.0/sql/statements/{statement.statement_id}/result/chunks/"
            f"{chunk.index}/data?expires={expires}&signature={signature}"
        )
        link: dict[str, Any] = {
            **_chunk_info(chunk),
            "external_link": url,
            "expiration": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "http_headers": {},
        }
        if chunk.index + 1 < len(statement.chunks):
            link["next_chunk_index"] = chunk.index + 1
            link["next_chunk_internal_link"] = (
                f"/api/2.0/sql/statements/{statement.statement_id}/result/chunks/{chunk.index + 1}"
            )
        return link


def _chunk_file(statement: Statement, table: pa.Table, chunk: Chunk) -> bytes:
    """One EXTERNAL_LINKS chunk as the file Databricks' storage would hold: an Arrow IPC
    stream, or a JSON array of rows; LZ4-framed when the client asked."""
    part = table.slice(chunk.row_offset, chunk.row_count)
    if statement.result_format == "ARROW_STREAM":
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, part.schema) as writer:
            writer.write_table(part)
        data = sink.getvalue().to_pybytes()
    else:
        data = b"".join(_json_rows(part))[len(b'"data_array":') :]
    if statement.compression == "LZ4_FRAME":
        data = lz4.frame.compress(data)
    return data


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
    audit: dict[str, Any] = {"statement": body.statement[:1000]}
    if body.query_tags:
        audit["query_tags"] = json.dumps({t.key: t.value for t in body.query_tags})
    request.state.audit_params = audit
    if body.session_id is not None:
        sessions(request).use(caller, body.session_id)
    check_defaults(body.catalog, body.schema_)
    external = body.disposition != "INLINE"
    compression = body.result_compression if body.result_compression == "LZ4_FRAME" else None
    if external and body.format != "ARROW_STREAM" and body.disposition != "EXTERNAL_LINKS":
        raise InvalidRequest("INLINE_OR_EXTERNAL_LINKS needs format ARROW_STREAM.")
    parameters = [p.model_dump() for p in body.parameters] if body.parameters else None
    statements = manager(request)
    statement = statements.submit(
        caller,
        body.statement,
        parameters,
        body.row_limit,
        body.byte_limit,
        body.format,
        disposition="EXTERNAL_LINKS" if external else "INLINE",
        compression=compression if external else None,
    )
    if wait:
        await _wait(statement, wait)
    if not statement.done.is_set() and body.on_wait_timeout == "CANCEL":
        statement = statements.cancel(caller, statement.statement_id)
        await _wait(statement, _CANCEL_WAIT_S)  # the worker stops within ~50 ms
    if statement.error is not None:
        request.state.error_message = statement.error.message
    return render(statement, ChunkLinks(request))


@router.get("/statements/{statement_id}", name="get_statement")
def get_statement(
    request: Request, statement_id: str, caller: Caller = Depends(sql_scope)
) -> Response:
    statement = manager(request).get(caller, statement_id)
    return render(statement, ChunkLinks(request))


@router.delete("/statements/{statement_id}", name="close_statement")
def close_statement(
    request: Request, statement_id: str, caller: Caller = Depends(sql_scope)
) -> dict[str, Any]:
    manager(request).close_statement(caller, statement_id)
    return {}


def _kept_result(statement: Statement, chunk_index: int) -> Any:
    _, result = _status(statement)
    count = len(statement.chunks) if statement.disposition != "INLINE" else 1
    if not 0 <= chunk_index < count or result is None:
        if statement.state is StatementState.CLOSED:
            raise InvalidRequest(
                f"Statement '{statement.statement_id}' is CLOSED: its result is no longer "
                "kept; run the statement again."
            )
        raise InvalidRequest(
            f"No result chunk {chunk_index} for statement '{statement.statement_id}'."
        )
    return result


@router.get("/statements/{statement_id}/result/chunks/{chunk_index}", name="get_statement_result")
def get_chunk(
    request: Request, statement_id: str, chunk_index: int, caller: Caller = Depends(sql_scope)
) -> Response:
    statement = manager(request).get(caller, statement_id)
    result = _kept_result(statement, chunk_index)
    if statement.disposition != "INLINE":
        link = ChunkLinks(request).link(statement, statement.chunks[chunk_index])
        return JSONResponse({"external_links": [link]})
    table: pa.Table = result.table
    head = _open_object(_chunk_head(table), 1)
    return StreamingResponse(
        itertools.chain([head], _chunk_body(table, statement.result_format, 1)),
        media_type="application/json",
    )


@router.get(
    "/statements/{statement_id}/result/chunks/{chunk_index}/data",
    name="download_statement_result_chunk",
)
def download_chunk(
    request: Request,
    statement_id: str,
    chunk_index: int,
    expires: int = Query(ge=0, le=2**62),
    signature: str = Query(min_length=64, max_length=64),
) -> Response:
    """A presigned EXTERNAL_LINKS chunk: no credential, the signature is the authority (it
    names this chunk of this statement, for its owner, until ``expires``)."""
    statement = manager(request).verify(statement_id, chunk_index, expires, signature)
    if statement.disposition == "INLINE":
        raise NotFound(f"Statement '{statement_id}' has no external result.")
    result = _kept_result(statement, chunk_index)
    data = _chunk_file(statement, result.table, statement.chunks[chunk_index])
    media = "application/vnd.apache.arrow.stream"
    if statement.result_format != "ARROW_STREAM":
        media = "application/json"
    return Response(data, media_type=media)


@router.post("/statements/{statement_id}/cancel", name="cancel_statement")
def cancel_statement(
    request: Request, statement_id: str, caller: Caller = Depends(sql_scope)
) -> dict[str, Any]:
    manager(request).cancel(caller, statement_id)
    return {}


@router.post("/sessions", name="create_session")
def create_session(
    request: Request, body: CreateSession, caller: Caller = Depends(sql_scope)
) -> dict[str, Any]:
    session = sessions(request).create(
        caller, body.warehouse_id, body.session_confs, body.catalog, body.schema_
    )
    return {"session_id": session.session_id}


@router.delete("/sessions/{session_id}", name="delete_session")
def delete_session(
    request: Request, session_id: str, caller: Caller = Depends(sql_scope)
) -> dict[str, Any]:
    sessions(request).close(caller, session_id)
    return {}


connector_router = APIRouter(prefix="/api/2.0/connector-service", tags=["databrickssql"])


@connector_router.get("/feature-flags/{driver}/{version}", name="connector_feature_flags")
def feature_flags(
    driver: str = Path_(max_length=32),
    version: str = Path_(max_length=64),
    caller: Caller = Depends(sql_scope),
) -> dict[str, Any]:
    """databricks-sql-connector asks for its feature flags when it connects: none are set
    here (so, among others, its telemetry stays off)."""
    return {"flags": [], "ttl_seconds": 3600}
