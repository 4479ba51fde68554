"""The Statement Execution API (``/api/2.0/sql/statements``), in Databricks' shape."""

from __future__ import annotations

import base64
import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import InvalidRequest
from bastion.identity.model import Caller
from bastion.server.auth import authenticated
from bastion.server.statements import Statement, StatementManager, StatementState

router = APIRouter(prefix="/api/2.0/sql", tags=["databrickssql"])
sql_scope = authenticated("sql")
_WAIT = re.compile(r"^(\d+)s$")


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


def render(statement: Statement) -> dict[str, Any]:
    result_format = statement.result_format
    body: dict[str, Any] = {
        "statement_id": statement.statement_id,
        "status": {"state": statement.state.value},
    }
    if statement.error is not None:
        body["status"]["error"] = {
            "error_code": statement.error.error_code,
            "message": statement.error.message,
        }
    if statement.state is not StatementState.SUCCEEDED or statement.result is None:
        return body
    result = statement.result
    table: pa.Table = result.table
    body["manifest"] = {
        "format": result_format,
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
        "chunks": [{"chunk_index": 0, "row_offset": 0, "row_count": table.num_rows}],
        "total_row_count": table.num_rows,
        "truncated": result.truncated,
    }
    data: dict[str, Any] = {"chunk_index": 0, "row_offset": 0, "row_count": table.num_rows}
    if result_format == "ARROW_STREAM":
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        data["attachment"] = base64.b64encode(sink.getvalue().to_pybytes()).decode()
    else:
        columns = table.to_pydict()
        data["data_array"] = [
            [_cell(columns[name][i]) for name in table.column_names] for i in range(table.num_rows)
        ]
    body["result"] = data
    return body


@router.post("/statements", name="execute_statement")
def execute_statement(
    request: Request, body: ExecuteStatement, caller: Caller = Depends(sql_scope)
) -> dict[str, Any]:
    wait = _wait_seconds(body.wait_timeout)
    request.state.audit_params = {"statement": body.statement[:1000]}
    parameters = [p.model_dump() for p in body.parameters] if body.parameters else None
    statement = manager(request).submit(
        caller, body.statement, parameters, body.row_limit, wait, body.format
    )
    if not statement.done.is_set() and body.on_wait_timeout == "CANCEL":
        statement = manager(request).cancel(caller, statement.statement_id)
    if statement.error is not None:
        request.state.error_message = statement.error.message
    return render(statement)


@router.get("/statements/{statement_id}", name="get_statement")
def get_statement(
    request: Request, statement_id: str, caller: Caller = Depends(sql_scope)
) -> dict[str, Any]:
    statement = manager(request).get(caller, statement_id)
    return render(statement)


@router.get("/statements/{statement_id}/result/chunks/{chunk_index}", name="get_statement_result")
def get_chunk(
    request: Request, statement_id: str, chunk_index: int, caller: Caller = Depends(sql_scope)
) -> dict[str, Any]:
    statement = manager(request).get(caller, statement_id)
    if chunk_index != 0 or statement.state is not StatementState.SUCCEEDED:
        raise InvalidRequest(f"No result chunk {chunk_index} for statement '{statement_id}'.")
    return dict(render(statement)["result"])


@router.post("/statements/{statement_id}/cancel", name="cancel_statement")
def cancel_statement(
    request: Request, statement_id: str, caller: Caller = Depends(sql_scope)
) -> dict[str, Any]:
    manager(request).cancel(caller, statement_id)
    return {}
