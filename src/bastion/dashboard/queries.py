"""The SQL each panel runs, built from the view state — every tile, chart and table from the
same filters. Values are bound parameters; the only text spliced in is checked first (table
names from the catalog, quoted; a bucket unit and a time zone from fixed lists).

>>> ops = OpsQueries(["main.default.bot_payload"], ViewState(status="error"))
>>> "status_code >= 400" in ops.kpis().sql
True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bastion.dashboard.state import ViewState, time_zones

#: Columns the Ops view reads from every payload table (the inference-table schema).
COLUMNS = (
    "request_id",
    "request_time",
    "status_code",
    "total_duration_ms",
    "input_tokens",
    "output_tokens",
    "requester",
    "endpoint_name",
    "model_version",
    "environment",
    "scan_type",
    "trace_id",
)
MAX_TABLES = 50
ROWS_PAGE = 50
OUTLIERS = 20


@dataclass(frozen=True)
class Statement:
    """What a panel ran: shown verbatim under "show SQL"."""

    sql: str
    params: dict[str, Any]

    def shown(self) -> str:
        bound = "\n".join(f"-- :{k} = {v!r}" for k, v in self.params.items())
        return f"{self.sql}\n{bound}" if bound else self.sql


def quote(full_name: str) -> str:
    return ".".join("`" + part.replace("`", "``") + "`" for part in full_name.split("."))


def payload_tables_statement() -> Statement:
    """The payload tables this viewer may see (the catalog lists only those)."""
    return Statement(
        "SELECT table_catalog, table_schema, table_name\n"
        "FROM system.information_schema.tables\n"
        "WHERE endswith(table_name, '_payload')\n"
        "ORDER BY table_catalog, table_schema, table_name",
        {},
    )


class OpsQueries:
    """The Ops view's statements over the union of the visible payload tables."""

    def __init__(
        self,
        tables: list[str],
        state: ViewState,
        now: datetime | None = None,
        *,
        text_columns: bool = True,
    ) -> None:
        self.tables = tables[:MAX_TABLES]
        self.state = state
        self.start, self.end = state.window(now)
        self.previous_start, _ = state.previous_window(now)
        self.text_columns = text_columns

    # -- the shared source and filters --------------------------------------------------------

    def _source(self, *, extra: tuple[str, ...] = (), since_previous: bool = False) -> str:
        columns = ", ".join((*COLUMNS, *extra))
        start = ":previous_start" if since_previous else ":start"
        parts = [
            f"  SELECT {columns} FROM {quote(t)}\n"
            f"  WHERE request_time >= {start} AND request_time < :end"
            for t in self.tables
        ]
        return "WITH src AS (\n" + "\n  UNION ALL\n".join(parts) + "\n)"

    def _filters(self) -> tuple[str, dict[str, Any]]:
        s = self.state
        clauses: list[str] = []
        params: dict[str, Any] = {}
        for column, value in (
            ("endpoint_name", s.endpoint),
            ("model_version", s.model_version),
            ("requester", s.requester),
            ("environment", s.environment),
        ):
            if value:
                clauses.append(f"{column} = :{column}")
                params[column] = value
        if s.scan_type != "all":
            clauses.append("coalesce(scan_type, 'normal') = :scan_type")
            params["scan_type"] = s.scan_type
        if s.status == "ok":
            clauses.append("status_code < 400")
        elif s.status == "error":
            clauses.append("status_code >= 400")
        elif s.status.isdigit():
            clauses.append("status_code = :status_code")
            params["status_code"] = int(s.status)
        if s.q:
            clauses.append("(contains(lower(request), :q) OR contains(lower(response), :q))")
            params["q"] = s.q.lower()
        return (" AND ".join(clauses) or "TRUE"), params

    def _needs_text(self) -> tuple[str, ...]:
        return ("request", "response") if self.state.q else ()

    def _params(self, **more: Any) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, **more}

    # -- panels -------------------------------------------------------------------------------

    def panels(self) -> dict[str, Statement]:
        """Every statement of the Ops view's first render, run at once (the outliers too:
        the view filters them by the KPIs' p99 afterwards)."""
        return {
            "facets": self.facets(),
            "kpis": self.kpis(),
            "series": self.series(),
            "groups": self.groups(),
            "outliers": self.outliers(),
            "rows": self.rows(),
        }

    def kpis(self) -> Statement:
        """Requests, errors, latency percentiles with n, tokens, users — for the window and
        the one before it (the Δ). Percentiles are exact (``percentile_disc``: the smallest
        latency that at least that share of requests does not exceed, which is what
        ``percentile_approx`` estimates), and cheaper than the estimate here."""
        where, params = self._filters()
        sql = (
            f"{self._source(extra=self._needs_text(), since_previous=True)}\n"
            "SELECT CASE WHEN request_time >= :start THEN 'current' ELSE 'previous' END AS win,\n"
            "  count(*) AS requests,\n"
            "  count_if(status_code >= 400) AS errors,\n"
            f"  {_percentile(0.5, 'total_duration_ms')} AS p50_ms,\n"
            f"  {_percentile(0.95, 'total_duration_ms')} AS p95_ms,\n"
            f"  {_percentile(0.99, 'total_duration_ms')} AS p99_ms,\n"
            "  count(total_duration_ms) AS latency_n,\n"
            "  sum(input_tokens) AS input_tokens,\n"
            "  sum(output_tokens) AS output_tokens,\n"
            "  count(DISTINCT requester) AS users\n"
            f"FROM src WHERE {where}\n"
            "GROUP BY 1"
        )
        return Statement(sql, {**self._params(previous_start=self.previous_start), **params})

    def series(self) -> Statement:
        """Requests, errors and p95 latency per bucket, in the viewer's time zone.

        Converting every row's time to the zone is what costs (most of the statement); rows
        are instead numbered by their UTC quarter hour (minute, for minute buckets), which is
        integer arithmetic, and only each quarter's first time is converted: every zone's
        offset is a whole number of quarter hours, so a quarter lies in one local bucket.
        """
        where, params = self._filters()
        unit = self.state.bucket()
        tz = self.state.tz if self.state.tz in time_zones() else "UTC"
        step = 60_000_000 if unit == "MINUTE" else 900_000_000  # µs
        sql = (
            f"{self._source(extra=self._needs_text())},\n"
            "b AS (\n"
            f"  SELECT unix_micros(request_time) DIV {step} AS q, status_code, "
            "total_duration_ms, request_time\n"
            f"  FROM src WHERE {where}\n"
            "),\n"
            "m AS (\n"
            f"  SELECT q, date_trunc('{unit}', convert_timezone('UTC', '{tz}', "
            "min(request_time))) AS bucket\n"
            "  FROM b GROUP BY q\n"
            ")\n"
            "SELECT m.bucket,\n"
            "  count(*) AS requests,\n"
            "  count_if(b.status_code >= 400) AS errors,\n"
            f"  {_percentile(0.95, 'b.total_duration_ms')} AS p95_ms\n"
            "FROM b JOIN m ON b.q = m.q\n"
            "GROUP BY 1 ORDER BY 1"
        )
        return Statement(sql, {**self._params(), **params})

    def groups(self) -> Statement:
        """Per endpoint × model version × requester, this window against the one before:
        the input of the anomaly ranking."""
        where, params = self._filters()
        sql = (
            f"{self._source(extra=self._needs_text(), since_previous=True)}\n"
            "SELECT endpoint_name, model_version, requester,\n"
            "  count_if(request_time >= :start) AS requests,\n"
            "  count_if(request_time >= :start AND status_code >= 400) AS errors,\n"
            "  count_if(request_time < :start) AS base_requests,\n"
            "  count_if(request_time < :start AND status_code >= 400) AS base_errors,\n"
            f"  {_percentile(0.95, 'CASE WHEN request_time >= :start THEN total_duration_ms END')}"
            " AS p95_ms,\n"
            f"  {_percentile(0.95, 'CASE WHEN request_time < :start THEN total_duration_ms END')}"
            " AS base_p95_ms\n"
            f"FROM src WHERE {where}\n"
            "GROUP BY 1, 2, 3"
        )
        return Statement(sql, {**self._params(previous_start=self.previous_start), **params})

    def outliers(self) -> Statement:
        """The slowest requests of the window. The view keeps those at or above the window's
        p99 (from the KPI statement): the slowest 20 of those are exactly the slowest 20
        filtered by it, so this runs beside the KPIs instead of after them."""
        where, params = self._filters()
        sql = (
            f"{self._source(extra=self._needs_text())}\n"
            "SELECT request_time, endpoint_name, model_version, requester, status_code,\n"
            "  total_duration_ms, request_id, trace_id\n"
            f"FROM src WHERE {where} AND total_duration_ms IS NOT NULL\n"
            f"ORDER BY total_duration_ms DESC LIMIT {OUTLIERS}"
        )
        return Statement(sql, {**self._params(), **params})

    def rows(self, page: int = 0) -> Statement:
        """The newest matching rows, one page at a time (request and response shortened)."""
        where, params = self._filters()
        text = ", substring(request, 1, 300) AS request, substring(response, 1, 300) AS response"
        sql = (
            f"{self._source(extra=('request', 'response'))}\n"
            "SELECT request_time, endpoint_name, model_version, requester, environment,\n"
            "  coalesce(scan_type, 'normal') AS scan_type, status_code, total_duration_ms,\n"
            f"  input_tokens, output_tokens, request_id, trace_id{text}\n"
            f"FROM src WHERE {where}\n"
            f"ORDER BY request_time DESC LIMIT {ROWS_PAGE} OFFSET {ROWS_PAGE * max(page, 0)}"
        )
        return Statement(sql, {**self._params(), **params})

    def facets(self) -> Statement:
        """The values the filter menus offer (from the same window)."""
        sql = (
            f"{self._source(since_previous=False)}\n"
            "SELECT DISTINCT endpoint_name, model_version, requester, environment FROM src\n"
            "LIMIT 2000"
        )
        return Statement(sql, self._params())


def _percentile(fraction: float, expression: str) -> str:
    return f"percentile_disc({fraction}) WITHIN GROUP (ORDER BY {expression})"


def trace_statement(trace_id: str, page: int, page_size: int = 200) -> Statement:
    """One page of a trace's spans, in start order (large traces page on the server)."""
    return Statement(
        "SELECT span_id, parent_span_id, name, kind, start_time, end_time, duration_ms,\n"
        "  status_code, status_message, attributes, service_name\n"
        "FROM system.tracing.spans WHERE trace_id = :trace_id\n"
        f"ORDER BY start_time, span_id LIMIT {page_size + 1} OFFSET {page_size * max(page, 0)}",
        {"trace_id": trace_id},
    )


def trace_of_request_statement(tables: list[str], request_id: str) -> Statement:
    """The trace of a request (a payload row, or a red-team case's request), in the payload
    tables the viewer may read."""
    parts = [
        f"SELECT trace_id FROM {quote(t)} WHERE request_id = :request_id"
        for t in tables[:MAX_TABLES]
    ]
    return Statement(" UNION ALL ".join(parts) + " LIMIT 1", {"request_id": request_id})


def trace_size_statement(trace_id: str) -> Statement:
    return Statement(
        "SELECT count(*) AS spans, min(start_time) AS started, max(end_time) AS ended\n"
        "FROM system.tracing.spans WHERE trace_id = :trace_id",
        {"trace_id": trace_id},
    )


def audit_statement(state: ViewState, now: datetime | None = None, limit: int = 500) -> Statement:
    """Who did what, newest first: state changes, data reads, denials."""
    start, end = state.window(now)
    clauses = ["event_time >= :start", "event_time < :end"]
    params: dict[str, Any] = {"start": start, "end": end}
    if state.requester:
        clauses.append("user_identity.email = :who")
        params["who"] = state.requester
    if state.status == "error":
        clauses.append("response.statusCode >= 400")
    elif state.status == "ok":
        clauses.append("response.statusCode < 400")
    if state.q:
        clauses.append("(contains(lower(action_name), :q) OR contains(lower(service_name), :q))")
        params["q"] = state.q.lower()
    return Statement(
        "SELECT event_time, user_identity.email AS user, identity_metadata.run_by AS run_by,\n"
        "  service_name, action_name, response.statusCode AS status,\n"
        "  response.errorMessage AS error, request_params, source_ip_address, request_id\n"
        "FROM system.access.audit\n"
        f"WHERE {' AND '.join(clauses)}\n"
        f"ORDER BY event_time DESC LIMIT {int(limit)}",
        params,
    )
