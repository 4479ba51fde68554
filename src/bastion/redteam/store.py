"""Where scans live: ``system.redteam.scans``, ``system.redteam.results`` and the view
``system.redteam.results_joined`` (results next to the gateway's payload rows).

Rows reach Delta through the platform's durable writer, inside the server (a REST scan, or a
CLI scan posting its rows). A scan row is written when the scan ends (completed, failed or
interrupted); a resumed scan writes another, and readers take the latest row per ``scan_id``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from bastion.errors import AlreadyExists, BastionError, NotFound
from bastion.governance.securables import quote_name
from bastion.redteam.models import (
    AttackResult,
    Complexity,
    Objective,
    RiskCategory,
    Verdict,
)
from bastion.tables import delta
from bastion.tables.storage import reachable
from bastion.tables.system import SystemTable, define_table

if TYPE_CHECKING:
    from bastion.platform import Platform

logger = logging.getLogger(__name__)

SCANS = define_table(
    "system.redteam.scans",
    "scan_id",
    "One row per red-team scan as it ended; the latest row per scan_id is current.",
    [
        ("scan_id", "string"),
        ("created_at", "timestamp"),
        ("finished_at", "timestamp"),
        ("status", "string"),
        ("endpoint_name", "string"),
        ("requester", "string"),
        ("risk_categories", "array<string>"),
        ("strategies", "array<string>"),
        ("num_objectives", "int"),
        ("judge", "string"),
        ("threshold", "int"),
        ("total", "bigint"),
        ("evaluated", "bigint"),
        ("succeeded", "bigint"),
        ("errors", "bigint"),
        ("asr", "double"),
        ("scorecard", "string"),
        ("parameters", "string"),
        ("message", "string"),
        ("judge_version", "string"),
        ("judge_accuracy", "double"),
        ("judge_sensitivity", "double"),
        ("judge_specificity", "double"),
        ("asr_corrected", "double"),
        ("asr_ci_lower", "double"),
        ("asr_ci_upper", "double"),
        ("escalated", "bigint"),
    ],
)

RESULTS = define_table(
    "system.redteam.results",
    "result_id",
    "One row per red-team attack: objective x strategy, conversation, verdict, request ids.",
    [
        ("result_id", "string"),
        ("scan_id", "string"),
        ("n", "bigint"),
        ("created_at", "timestamp"),
        ("endpoint_name", "string"),
        ("risk_category", "string"),
        ("risk_sub_type", "string"),
        ("objective_id", "string"),
        ("objective", "string"),
        ("benign", "boolean"),
        ("strategy", "string"),
        ("complexity", "string"),
        ("converted_prompt", "string"),
        ("conversation", "array<struct<role:string,content:string>>"),
        ("response", "string"),
        ("judge", "string"),
        ("severity", "int"),
        ("severity_label", "string"),
        ("reason", "string"),
        ("refusal", "boolean"),
        ("threshold", "int"),
        ("attack_success", "boolean"),
        ("error", "string"),
        ("client_request_id", "string"),
        ("request_ids", "array<string>"),
        ("latency_ms", "bigint"),
        ("model_version", "string"),
        ("judge_version", "string"),
        ("confidence", "double"),
        ("escalated", "boolean"),
    ],
)

RESULTS_JOINED = "system.redteam.results_joined"
REDTEAM_TABLES: tuple[SystemTable, ...] = (SCANS, RESULTS)
SCAN_COLUMNS = frozenset(SCANS.schema.names)
RESULT_COLUMNS = frozenset(RESULTS.schema.names)


def ensure_redteam_tables(platform: Platform) -> None:
    """Register both tables in the catalog and with the writer; create the joined view.

    Idempotent; call once at server start-up (after ``bootstrap.initialize``).
    """
    from bastion.bootstrap import ADMIN_USER, register_system_table

    admin = platform.identity.find(ADMIN_USER)
    for table in REDTEAM_TABLES:
        upgrade_table(platform, table)
        if admin is not None:  # not initialised yet: writer only, the catalog comes later
            with contextlib.suppress(AlreadyExists):
                register_system_table(platform, table, admin.id)
        platform.writer.register(table.spec(platform.table_storage))
    if admin is not None:
        ensure_results_view(platform)


def upgrade_table(platform: Platform, table: SystemTable) -> list[str]:
    """Add the columns this version defines to a table created by an older one.

    Delta tables keep the schema they were created with, and the writer's appends must fit
    it; so before the writer opens a table, missing columns are added (nullable: old rows
    read them as NULL) and the catalog's column list is refreshed. Returns the names added.
    """
    from deltalake import Field

    storage = platform.table_storage
    with reachable(f"upgrade {table.full_name}"):
        existing = delta.open_table(
            storage.location(table.full_name), storage_options=storage.options
        )
        if existing is None:
            return []
        have = {f.name for f in existing.schema().fields}
        missing = [f for f in table.schema if f.name not in have]
        if not missing:
            return []
        existing.alter.add_columns([Field.from_arrow(f) for f in missing])
    logger.info("%s: added columns %s", table.full_name, ", ".join(f.name for f in missing))
    _refresh_catalog_columns(platform, table)
    return [f.name for f in missing]


def _refresh_catalog_columns(platform: Platform, table: SystemTable) -> None:
    from bastion.bootstrap import ADMIN_USER
    from bastion.governance.securables import SecurableType
    from bastion.tables.columns import parse_column

    columns = [parse_column({"name": n, "type_text": t}) for n, t in table.columns]
    with contextlib.suppress(BastionError):
        platform.governance.update(
            SecurableType.TABLE,
            table.full_name,
            updated_by=ADMIN_USER,
            properties={"columns": [c.as_dict(i) for i, c in enumerate(columns)]},
        )


# -- the joined view -----------------------------------------------------------------------

_PAYLOAD_COLUMNS = (
    ("request_id", "STRING"),
    ("request_time", "TIMESTAMP"),
    ("status_code", "INT"),
    ("total_duration_ms", "BIGINT"),
    ("model_name", "STRING"),
    ("model_version", "STRING"),
    ("served_entity_id", "STRING"),
    ("requester", "STRING"),
    ("scan_type", "STRING"),
    ("scan_id", "STRING"),
    ("input_tokens", "BIGINT"),
    ("output_tokens", "BIGINT"),
    ("request", "STRING"),
    ("response", "STRING"),
)


def payload_tables(platform: Platform) -> list[str]:
    """Endpoints' payload tables: only tables bound to an endpoint, never a user's table that
    merely has a ``_payload`` name and the right columns (its rows would join scans)."""
    from bastion.observability.payload_tables import bound_payload_tables

    return bound_payload_tables(platform)


def results_view_sql(payloads: Sequence[str]) -> str:
    """``results_joined``: every result row with each payload row its attack produced (the
    target's turns, matched on ``client_request_id``); ``p_*`` columns are NULL when the
    payload table has no matching row (yet)."""
    cols = ", ".join(f"{name} AS p_{name}" for name, _ in _PAYLOAD_COLUMNS)
    if payloads:
        union = " UNION ALL ".join(
            f"SELECT client_request_id AS p_client_request_id, {cols} FROM {quote_name(name)}"
            f" WHERE scan_type = 'redteam'"
            for name in payloads
        )
    else:
        nulls = ", ".join(f"CAST(NULL AS {kind}) AS p_{name}" for name, kind in _PAYLOAD_COLUMNS)
        union = f"SELECT CAST(NULL AS STRING) AS p_client_request_id, {nulls} WHERE 1 = 0"
    return (
        f"CREATE OR REPLACE VIEW {quote_name(RESULTS_JOINED)} AS SELECT r.*, p.* "
        f"FROM {quote_name(RESULTS.full_name)} AS r LEFT JOIN ({union}) AS p "
        "ON r.client_request_id = p.p_client_request_id"
    )


def ensure_results_view(platform: Platform) -> bool:
    """(Re)create the joined view over the payload tables that exist now, as admin.

    Called at start-up and after each scan, so a new endpoint's payload table joins in.
    Returns False (and logs) when the SQL engine is unavailable or refuses.
    """
    from bastion.bootstrap import ADMIN_USER
    from bastion.query import engine_of

    admin = platform.identity.find(ADMIN_USER)
    if admin is None:
        return False
    try:
        caller = platform.identity_cache.caller(admin.id)
        engine_of(platform).execute(caller, results_view_sql(payload_tables(platform)))
    except (BastionError, Exception) as exc:  # the view is a convenience, never fatal
        logger.warning("could not create %s: %s", RESULTS_JOINED, exc)
        return False
    return True


# -- rows ----------------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


def result_row(
    result: AttackResult,
    *,
    scan_id: str,
    n: int,
    endpoint: str,
    client_request_id: str,
    request_ids: Sequence[str] = (),
    latency_ms: int | None = None,
    model_version: str | None = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """One ``system.redteam.results`` row (JSON-ready: timestamps as ISO strings)."""
    verdict = result.verdict
    first_user = next((m["content"] for m in result.conversation if m["role"] == "user"), None)
    last_reply = next(
        (m["content"] for m in reversed(result.conversation) if m["role"] == "assistant"), None
    )
    return {
        "result_id": f"{scan_id}:{n}",
        "scan_id": scan_id,
        "n": n,
        "created_at": (created_at or utcnow()).isoformat(),
        "endpoint_name": endpoint,
        "risk_category": result.risk_category.value,
        "risk_sub_type": result.objective.risk_sub_type,
        "objective_id": result.objective.id,
        "objective": result.objective.text,
        "benign": result.objective.benign,
        "strategy": result.technique,
        "complexity": result.complexity.value,
        "converted_prompt": first_user,
        "conversation": [{"role": m["role"], "content": m["content"]} for m in result.conversation],
        "response": last_reply,
        "judge": verdict.judge if verdict else None,
        "severity": verdict.severity if verdict else None,
        "severity_label": verdict.label if verdict else None,
        "reason": verdict.reason if verdict else None,
        "refusal": verdict.refusal if verdict else None,
        "threshold": verdict.threshold if verdict else None,
        "attack_success": result.attack_success,
        "error": result.error,
        "client_request_id": client_request_id,
        "request_ids": list(request_ids),
        "latency_ms": latency_ms,
        "model_version": model_version,
        "judge_version": verdict.judge_version if verdict else None,
        "confidence": verdict.confidence if verdict else None,
        "escalated": verdict.escalated if verdict else None,
    }


def judge_columns(scorecard: Mapping[str, Any]) -> dict[str, Any]:
    """The ``system.redteam.scans`` judge and ASR-interval columns, from a scorecard."""
    judge = scorecard.get("judge") or {}
    summary = (scorecard.get("risk_category_summary") or [{}])[0]
    error = judge.get("attack_success_error") or {}
    accuracy = judge.get("accuracy")
    return {
        "judge_version": judge.get("version"),
        "judge_accuracy": accuracy.get("value") if isinstance(accuracy, dict) else None,
        "judge_sensitivity": error.get("sensitivity"),
        "judge_specificity": error.get("specificity"),
        "asr_corrected": summary.get("overall_asr_corrected"),
        "asr_ci_lower": summary.get("overall_asr_ci_lower"),
        "asr_ci_upper": summary.get("overall_asr_ci_upper"),
        "escalated": judge.get("escalated_verdicts"),
    }


def attack_result(row: Mapping[str, Any]) -> AttackResult:
    """The :class:`AttackResult` a results row was made from (for scorecards and diffs)."""
    objective = Objective(
        id=str(row["objective_id"]),
        risk_category=RiskCategory.parse(str(row["risk_category"])),
        text=str(row.get("objective") or ""),
        benign=bool(row.get("benign") or False),
        risk_sub_type=row.get("risk_sub_type"),
    )
    verdict = None
    if row.get("error") is None and row.get("judge") is not None:
        verdict = Verdict(
            severity=row.get("severity"),
            reason=str(row.get("reason") or ""),
            refusal=row.get("refusal"),
            attack_success=row.get("attack_success"),
            threshold=int(row.get("threshold") or 3),
            judge=str(row.get("judge") or ""),
            confidence=row.get("confidence"),
            escalated=bool(row.get("escalated") or False),
            judge_version=row.get("judge_version"),
        )
    conversation = tuple(
        {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
        for m in row.get("conversation") or []
    )
    return AttackResult(
        objective=objective,
        technique=str(row["strategy"]),
        complexity=Complexity(str(row["complexity"])),
        conversation=conversation,
        verdict=verdict,
        error=row.get("error"),
    )


def clean_row(row: Mapping[str, Any], columns: frozenset[str]) -> dict[str, Any]:
    """Only the table's columns (a client may send extra keys; they are dropped)."""
    return {k: v for k, v in row.items() if k in columns}


# -- sinks: where a running scan sends its rows ------------------------------------------


class ResultSink(Protocol):
    """Receives a scan's rows as they are produced; see :class:`WriterSink`."""

    def results(self, rows: Sequence[Mapping[str, Any]]) -> None: ...

    def finish(self, record: Mapping[str, Any]) -> None: ...


class WriterSink:
    """Appends to the Delta tables through the platform's durable writer (in the server)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def results(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.platform.writer.append_many(
            RESULTS.full_name, [clean_row(r, RESULT_COLUMNS) for r in rows]
        )

    def finish(self, record: Mapping[str, Any]) -> None:
        self.platform.writer.append(SCANS.full_name, clean_row(record, SCAN_COLUMNS))
        with contextlib.suppress(BastionError):
            self.platform.writer.flush()


class NullSink:
    def results(self, rows: Sequence[Mapping[str, Any]]) -> None:
        return None

    def finish(self, record: Mapping[str, Any]) -> None:
        return None


# -- reading (inside the server) -----------------------------------------------------------


def _read(platform: Platform, table: SystemTable, scan_ids: Iterable[str] | None) -> pa.Table:
    storage = platform.table_storage
    with contextlib.suppress(BastionError):
        platform.writer.flush()
    try:
        with reachable(f"read {table.full_name}"):
            data = delta.read_table(
                storage.location(table.full_name), storage_options=storage.options
            )
    except NotFound:  # table not created yet
        return table.schema.empty_table()
    if scan_ids is not None:
        wanted = pa.array(list(scan_ids), pa.string())
        data = data.filter(pc.is_in(data["scan_id"], value_set=wanted))
    return data


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def read_scans(platform: Platform, scan_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The latest row of each scan (all scans, or those named), newest first."""
    rows = [_jsonable(r) for r in _read(platform, SCANS, scan_ids).to_pylist()]
    latest: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r.get("finished_at") or ""):
        latest[row["scan_id"]] = row
    return sorted(latest.values(), key=lambda r: r.get("created_at") or "", reverse=True)


def read_results(platform: Platform, scan_id: str) -> list[dict[str, Any]]:
    """A scan's result rows in attack order (one per ``result_id``)."""
    rows = [_jsonable(r) for r in _read(platform, RESULTS, [scan_id]).to_pylist()]
    unique = {r["result_id"]: r for r in rows}
    return sorted(unique.values(), key=lambda r: int(r.get("n") or 0))


def scan_record(platform: Platform, scan_id: str) -> dict[str, Any]:
    rows = read_scans(platform, [scan_id])
    if not rows:
        raise NotFound(f"Red-team scan '{scan_id}' does not exist.")
    return rows[0]


def decode_json(value: Any) -> Any:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value
