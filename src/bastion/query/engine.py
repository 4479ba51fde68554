"""The governed SQL engine: one Databricks SQL statement in, Arrow rows out.

>>> engine = QueryEngine(platform)                                  # doctest: +SKIP
>>> engine.execute(caller, "SELECT region, count(*) AS n FROM main.default.orders "
...                "WHERE amount > :min GROUP BY region", {"min": 10}).rows  # doctest: +SKIP
[{'region': 'EU', 'n': 2}, {'region': 'US', 'n': 1}]
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from bastion.clock import now_ms
from bastion.errors import BastionError, InvalidRequest, PermissionDenied
from bastion.fields import check_nesting
from bastion.governance.audit import AuditEvent
from bastion.identity.model import Caller
from bastion.platform import Platform, current_request
from bastion.query import commands, ddl, params, runner
from bastion.query.catalog import CatalogCache
from bastion.query.context import Context
from bastion.query.result import StatementResult, result_columns
from bastion.query.workers import PoolConfig, WorkerPool

MAX_STATEMENT_CHARS = 256 * 1024
AUDIT_SERVICE = "databrickssql"
AUDIT_ACTION = "executeStatement"

# sqlglot warns on every statement it parses as a generic Command; those are refused anyway.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


class QueryEngine:
    """Runs governed statements for callers; safe to share between threads.

    Governance (parsing, privilege checks, rewriting) happens here, in the calling process;
    execution happens in a pool of SQL worker processes (``bastion.query.workers``) sized
    and limited by the platform's settings (``BASTION_SQL_*``), started on first use and
    stopped by :meth:`close` (or when the engine is garbage-collected, or the process
    exits). Statements scanning at least ``native_scan_bytes`` of Parquet read it with
    DuckDB's own reader in a database allowed only those files (see ``sandbox``).
    """

    NATIVE_SCAN_BYTES = runner.NATIVE_SCAN_BYTES

    def __init__(
        self,
        platform: Platform,
        *,
        max_rows: int = 100_000,
        timeout_s: float | None = None,
        native_scan_bytes: int = NATIVE_SCAN_BYTES,
    ) -> None:
        settings = platform.settings
        self.platform = platform
        self.max_rows = max_rows
        self.timeout_s = timeout_s if timeout_s is not None else settings.sql_statement_timeout_s
        self.native_scan_bytes = native_scan_bytes
        self.max_result_bytes = settings.sql_inline_result_bytes
        self.catalog = CatalogCache(platform)
        self.pool = WorkerPool(PoolConfig.from_settings(settings, platform.table_storage.options))
        self._finalizer = weakref.finalize(self, self.pool.close)

    def close(self) -> None:
        """Stop the SQL workers (statements still running fail)."""
        self._finalizer()

    def execute(
        self,
        caller: Caller,
        statement: str,
        parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        row_limit: int | None = None,
        byte_limit: int | None = None,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
        max_bytes: int | None = None,
    ) -> StatementResult:
        """Check, rewrite and run one statement as ``caller``; every outcome is audited.

        ``row_limit`` and ``byte_limit`` truncate the result (``truncated``); a result larger
        than the engine's INLINE cap (``BASTION_SQL_INLINE_RESULT_BYTES``, or ``max_bytes``
        where given: the EXTERNAL_LINKS cap) fails instead.
        Raises ``InvalidRequest`` (unsupported or malformed SQL), ``PermissionDenied``,
        ``NotFound``, ``DeadlineExceeded`` (past ``timeout_s``, waiting included),
        ``StatementCanceled``, ``ResourceExhausted`` (memory or result size).
        """
        timeout = timeout_s if timeout_s is not None else self.timeout_s
        limits = runner.Limits(
            pool=self.pool,
            principal=caller.principal_id,
            deadline=time.monotonic() + max(timeout, 0.0),
            timeout_s=timeout,
            native_scan_bytes=self.native_scan_bytes,
            max_bytes=self.max_result_bytes if max_bytes is None else max_bytes,
            byte_limit=byte_limit,
        )
        ctx = Context(self.platform, self.catalog, caller, {}, limits, cancel)
        try:
            if not isinstance(statement, str) or not statement.strip():
                raise InvalidRequest("The statement is empty.")
            if len(statement) > MAX_STATEMENT_CHARS:
                raise InvalidRequest(
                    f"The statement is longer than {MAX_STATEMENT_CHARS} characters."
                )
            if timeout <= 0:
                raise InvalidRequest("timeout_s must be positive.")
            if row_limit is not None and row_limit < 0:
                raise InvalidRequest("row_limit must not be negative.")
            if byte_limit is not None and byte_limit < 0:
                raise InvalidRequest("byte_limit must not be negative.")
            ctx.parameters = params.normalize(parameters)
            limit = self.max_rows if row_limit is None else min(row_limit, self.max_rows)
            table, truncated = self._dispatch(ctx, statement, limit)
        except BastionError as error:
            self._audit(ctx, statement, error=error)
            raise
        self._audit(ctx, statement, rows=table.num_rows)
        return StatementResult(result_columns(table.schema), table, truncated, ctx.statement_type)

    # -- dispatch -------------------------------------------------------------------------

    def _dispatch(self, ctx: Context, statement: str, limit: int) -> tuple[pa.Table, bool]:
        found = commands.match(statement)
        if found is not None:
            command, parts = found
            ctx.statement_type = command.statement_type
            return command.handler(ctx, parts), False
        tree = parse(statement)
        if isinstance(tree, exp.Query):
            ctx.statement_type = "SELECT"
            return ctx.query(tree, max_rows=limit)
        if isinstance(tree, exp.Create):
            kind = str(tree.args.get("kind") or "").upper()
            handler = {
                "VIEW": ddl.create_view,
                "FUNCTION": ddl.create_function,
                "TABLE": ddl.create_table,
            }.get(kind)
            if handler is not None:
                ctx.statement_type = f"CREATE_{kind}"
                return handler(ctx, tree), False
        if isinstance(tree, exp.Insert):
            ctx.statement_type = "INSERT"
            return ddl.insert(ctx, tree), False
        if isinstance(tree, exp.Drop):
            ctx.statement_type = "DROP"
            return ddl.drop(ctx, tree), False
        ctx.statement_type = type(tree).__name__.upper()
        raise InvalidRequest(
            f"{_first_words(statement)} statements are not supported. Supported: SELECT, "
            "CREATE VIEW|FUNCTION|TABLE [AS SELECT], INSERT INTO, DROP, GRANT, REVOKE, "
            "ALTER TABLE ... ROW FILTER | MASK, SHOW, DESCRIBE."
        )

    # -- audit ----------------------------------------------------------------------------

    def _audit(
        self,
        ctx: Context,
        statement: str,
        *,
        rows: int | None = None,
        error: BastionError | None = None,
    ) -> None:
        info = current_request.get()
        if error is None:
            result = "allowed"
        elif isinstance(error, PermissionDenied):
            result = "denied"
        elif isinstance(error, InvalidRequest):
            result = "refused"
        else:
            result = "failed"
        request_params = {
            "commandText": statement[:4000] if isinstance(statement, str) else repr(statement),
            "statementType": ctx.statement_type,
            "result": result,
            "parameters": ",".join(sorted(ctx.parameters)),
        }
        if ctx.tables_read:
            request_params["tablesRead"] = ",".join(sorted(set(ctx.tables_read)))
        if rows is not None:
            request_params["rows"] = str(rows)
        if error is not None:
            request_params["errorCode"] = error.error_code
        self.platform.audit.emit(
            AuditEvent(
                event_time=now_ms(self.platform.clock),
                request_id=info.request_id if info else "",
                user_email=ctx.caller.name,
                service_name=AUDIT_SERVICE,
                action_name=AUDIT_ACTION,
                request_params=request_params,
                status_code=200 if error is None else error.status_code,
                error_message=error.message if error is not None else None,
                source_ip_address=info.source_ip if info else None,
                user_agent=info.user_agent if info else None,
                acting_app=ctx.caller.acting_app,
            )
        )


_PARSED: OrderedDict[str, exp.Expr] = OrderedDict()
_PARSED_LOCK = threading.Lock()
PARSE_CACHE_SIZE = 512


def parse(statement: str) -> exp.Expr:
    """Exactly one statement, parsed as Databricks SQL (a private copy, from a small cache).

    Parsing does not depend on who runs the statement, so the tree is cached by its text;
    resolution and privilege checks, which do, run on every execution.
    """
    with _PARSED_LOCK:
        tree = _PARSED.get(statement)
        if tree is not None:
            _PARSED.move_to_end(statement)
    if tree is None:
        tree = _parse(statement)
        with _PARSED_LOCK:
            _PARSED[statement] = tree
            while len(_PARSED) > PARSE_CACHE_SIZE:
                _PARSED.popitem(last=False)
    return tree.copy()


def _parse(statement: str) -> exp.Expr:
    check_nesting(statement, "statement")  # deeper trees would exhaust the parser's stack
    try:
        trees = [t for t in sqlglot.parse(statement, read="databricks") if t is not None]
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as error:
        raise InvalidRequest(f"Syntax error: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise InvalidRequest("The statement is nested too deeply; flatten it.") from None
    if not trees:
        raise InvalidRequest("The statement is empty.")
    if len(trees) > 1:
        raise InvalidRequest("Send one statement per request; multiple statements are refused.")
    return trees[0]


def _first_words(statement: str) -> str:
    words = statement.strip().split()
    return words[0].upper() if words else "Empty"
