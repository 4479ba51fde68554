"""Connection and cursor over the Statement Execution API."""

from __future__ import annotations

import base64
import functools
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pyarrow as pa


class Error(Exception):
    """Base of the DB-API exceptions; ``error_code`` carries Bastion's code."""

    def __init__(self, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class OperationalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


_PROGRAMMING = {"INVALID_PARAMETER_VALUE", "PERMISSION_DENIED", "RESOURCE_DOES_NOT_EXIST"}


class Row(tuple[Any, ...]):
    """A result row: a tuple whose values can also be read by column name."""

    _fields: tuple[str, ...] = ()

    def __new__(cls, values: Sequence[Any], fields: tuple[str, ...]) -> Row:
        row = super().__new__(cls, values)
        row._fields = fields
        return row

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._fields.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def asDict(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))


def _base_url(server_hostname: str) -> str:
    host = server_hostname.rstrip("/")
    if host.startswith(("http://", "https://")):
        return host
    return f"http://{host}"


def _parameter(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {"name": name, "value": None, "type": "VOID"}
    if isinstance(value, bool):
        return {"name": name, "value": "true" if value else "false", "type": "BOOLEAN"}
    if isinstance(value, int):
        return {"name": name, "value": str(value), "type": "BIGINT"}
    if isinstance(value, float):
        return {"name": name, "value": repr(value), "type": "DOUBLE"}
    if isinstance(value, Decimal):
        return {"name": name, "value": str(value), "type": "DECIMAL"}
    if isinstance(value, datetime):
        return {"name": name, "value": value.isoformat(), "type": "TIMESTAMP"}
    if isinstance(value, date):
        return {"name": name, "value": value.isoformat(), "type": "DATE"}
    return {"name": name, "value": str(value), "type": "STRING"}


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings httpx would make for each client (its CA bundle, ``SSL_CERT_FILE``),
    made once per process: loading the CA bundle costs ~50 ms of CPU, which a dashboard
    opening a connection per panel would otherwise pay on every panel."""
    return httpx.create_ssl_context()


class Connection:
    def __init__(
        self,
        server_hostname: str,
        access_token: str,
        *,
        http_path: str | None = None,
        catalog: str | None = None,
        schema: str | None = None,
        timeout: float = 300.0,
    ) -> None:
        self.base_url = _base_url(server_hostname)
        self.http_path = http_path  # accepted for compatibility; there is one built-in engine
        self.catalog = catalog
        self.schema = schema
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=httpx.Timeout(timeout, connect=10.0),
            verify=tls_context(),
        )
        self._closed = False

    def cursor(self) -> Cursor:
        if self._closed:
            raise InterfaceError("The connection is closed.")
        return Cursor(self)

    def close(self) -> None:
        self._closed = True
        self._http.close()

    def commit(self) -> None:
        """Statements are applied as they run; there is nothing to commit."""

    def rollback(self) -> None:
        raise NotSupportedError("Transactions are not supported.")

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise OperationalError(f"Cannot reach Bastion at {self.base_url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            code = str(body.get("error_code", ""))
            message = str(body.get("message") or response.text)
            kind = ProgrammingError if code in _PROGRAMMING else OperationalError
            raise kind(message, code)
        return dict(body)


class Cursor:
    arraysize = 1000

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self._table: pa.Table | None = None
        self._position = 0
        self._fields: tuple[str, ...] = ()
        self.statement_id: str | None = None

    def execute(self, operation: str, parameters: Mapping[str, Any] | None = None) -> Cursor:
        body: dict[str, Any] = {
            "statement": operation,
            "wait_timeout": "50s",
            "format": "ARROW_STREAM",
            "disposition": "INLINE",
        }
        if parameters:
            body["parameters"] = [_parameter(k, v) for k, v in parameters.items()]
        reply = self.connection._request("POST", "/api/2.0/sql/statements", json=body)
        self.statement_id = reply.get("statement_id")
        deadline = time.monotonic() + self.connection.timeout
        while reply["status"]["state"] in ("PENDING", "RUNNING"):
            if time.monotonic() > deadline:
                self.cancel()
                raise OperationalError("The statement timed out.")
            time.sleep(0.2)
            reply = self.connection._request("GET", f"/api/2.0/sql/statements/{self.statement_id}")
        state = reply["status"]["state"]
        if state != "SUCCEEDED":
            error = reply["status"].get("error") or {}
            code = error.get("bastion_error_code") or error.get("error_code")
            kind = ProgrammingError if code in _PROGRAMMING else OperationalError
            raise kind(error.get("message", f"The statement ended {state}."), code)
        self._load(reply)
        return self

    def _load(self, reply: dict[str, Any]) -> None:
        attachment = (reply.get("result") or {}).get("attachment")
        columns = reply.get("manifest", {}).get("schema", {}).get("columns", [])
        if attachment:
            self._table = pa.ipc.open_stream(base64.b64decode(attachment)).read_all()
        else:
            self._table = pa.table({c["name"]: pa.array([], pa.null()) for c in columns})
        self._fields = tuple(c["name"] for c in columns)
        self.description = [
            (c["name"], c.get("type_name", "STRING").lower(), None, None, None, None, None)
            for c in columns
        ]
        self.rowcount = self._table.num_rows
        self._position = 0

    def _rows(self, count: int | None) -> list[Row]:
        if self._table is None:
            raise ProgrammingError("No statement has been executed.")
        end = (
            self._table.num_rows
            if count is None
            else min(self._position + count, self._table.num_rows)
        )
        chunk = self._table.slice(self._position, end - self._position).to_pylist()
        self._position = end
        return [Row(tuple(r.values()), self._fields) for r in chunk]

    def fetchone(self) -> Row | None:
        rows = self._rows(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int | None = None) -> list[Row]:
        return self._rows(size or self.arraysize)

    def fetchall(self) -> list[Row]:
        return self._rows(None)

    def fetchall_arrow(self) -> pa.Table:
        if self._table is None:
            raise ProgrammingError("No statement has been executed.")
        rest = self._table.slice(self._position)
        self._position = self._table.num_rows
        return rest

    def __iter__(self) -> Iterator[Row]:
        while (row := self.fetchone()) is not None:
            yield row

    def cancel(self) -> None:
        if self.statement_id:
            self.connection._request("POST", f"/api/2.0/sql/statements/{self.statement_id}/cancel")

    def close(self) -> None:
        self._table = None

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def connect(
    server_hostname: str,
    access_token: str,
    http_path: str | None = None,
    *,
    catalog: str | None = None,
    schema: str | None = None,
    timeout: float = 300.0,
) -> Connection:
    """Open a connection, as ``databricks.sql.connect`` does (``http_path`` is ignored)."""
    return Connection(
        server_hostname,
        access_token,
        http_path=http_path,
        catalog=catalog,
        schema=schema,
        timeout=timeout,
    )
