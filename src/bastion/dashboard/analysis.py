"""What the panels compute from query results: KPI deltas, anomaly ranking, scan summaries,
span trees. Pure functions over data frames — and tolerant of missing, null or malformed
rows, which they skip and count (the caller says what was skipped)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

# -- robustness -----------------------------------------------------------------------------


@dataclass
class Skipped:
    """Rows left out of a panel, by reason (shown under it)."""

    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, count: int) -> None:
        if count:
            self.reasons[reason] = self.reasons.get(reason, 0) + int(count)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def describe(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.reasons.items()))


def numeric(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """The columns as numbers; anything unparsable becomes missing (never an exception)."""
    out = frame.copy()
    for column in columns:
        if column in out.columns:
            out[column] = pd.to_numeric(out[column], errors="coerce")
    return out


def number(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(result) or math.isinf(result) else result


# -- KPIs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kpi:
    label: str
    value: float | None
    previous: float | None
    unit: str = ""
    n: int | None = None
    #: Lower is better (errors, latency): a rise is shown in red.
    lower_is_better: bool = False

    @property
    def delta(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous


def kpis(frame: pd.DataFrame) -> list[Kpi]:
    """The tiles from the KPI query (one row per window: 'current', 'previous')."""
    rows = {str(r.get("win")): r for r in frame.to_dict("records")}
    now, before = rows.get("current", {}), rows.get("previous", {})

    def pair(key: str) -> tuple[float | None, float | None]:
        return number(now.get(key)), number(before.get(key))

    requests, requests_before = pair("requests")
    errors, errors_before = pair("errors")
    rate = (errors or 0) / requests * 100 if requests else None
    rate_before = (errors_before or 0) / requests_before * 100 if requests_before else None
    n = number(now.get("latency_n"))
    tiles = [
        Kpi("Requests", requests or 0.0, requests_before or 0.0),
        Kpi("Error rate", rate, rate_before, "%", lower_is_better=True),
    ]
    for key, label in (("p50_ms", "p50 latency"), ("p95_ms", "p95 latency"), ("p99_ms", "p99")):
        value, previous = pair(key)
        tiles.append(Kpi(label, value, previous, " ms", int(n) if n is not None else 0, True))
    for key, label in (("input_tokens", "Input tokens"), ("output_tokens", "Output tokens")):
        value, previous = pair(key)
        tiles.append(Kpi(label, value or 0.0, previous or 0.0))
    users, users_before = pair("users")
    tiles.append(Kpi("Distinct users", users or 0.0, users_before or 0.0))
    return tiles


# -- anomalies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anomaly:
    endpoint: str
    model_version: str
    requester: str
    kind: str
    score: float
    why: str


def rank_groups(frame: pd.DataFrame, min_requests: int = 5) -> list[Anomaly]:
    """Groups whose error rate or p95 latency departs from their own trailing baseline
    (the previous window): error spikes by a two-proportion z-score, then latency by the ratio
    of p95s."""
    out: list[Anomaly] = []
    data = numeric(
        frame, ("requests", "errors", "base_requests", "base_errors", "p95_ms", "base_p95_ms")
    )
    for row in data.to_dict("records"):
        n1, e1 = number(row.get("requests")) or 0, number(row.get("errors")) or 0
        n0, e0 = number(row.get("base_requests")) or 0, number(row.get("base_errors")) or 0
        key = (
            str(row.get("endpoint_name") or "—"),
            str(row.get("model_version") or "—"),
            str(row.get("requester") or "—"),
        )
        if n1 >= min_requests:
            p1 = e1 / n1
            p0 = e0 / n0 if n0 else 0.0
            pooled = (e1 + e0) / (n1 + n0) if n0 else p1
            spread = math.sqrt(max(pooled * (1 - pooled), 1e-9) * (1 / n1 + (1 / n0 if n0 else 1)))
            z = (p1 - p0) / spread if spread else 0.0
            if z >= 2.0 and e1 >= 2:
                out.append(
                    Anomaly(
                        *key,
                        "error spike",
                        z,
                        f"{p1:.0%} errors ({int(e1)}/{int(n1)}) vs {p0:.0%} before (n={int(n0)})",
                    )
                )
        p95, base = number(row.get("p95_ms")), number(row.get("base_p95_ms"))
        if p95 is not None and base and n1 >= min_requests and p95 / base >= 2.0:
            out.append(
                Anomaly(
                    *key,
                    "latency",
                    p95 / base,
                    f"p95 {p95:.0f} ms vs {base:.0f} ms before ({p95 / base:.1f}×)",
                )
            )
    # Error spikes first (a z-score), then latency (a ratio): the two scores do not compare.
    return sorted(out, key=lambda a: (a.kind != "error spike", -a.score))


# -- red teaming ----------------------------------------------------------------------------


def scan_counts(scan: dict[str, Any]) -> tuple[float, float]:
    """(attacks planned, attacks judged) of a stored scan or of a running one's progress."""
    raw = scan.get("progress")
    progress: dict[str, Any] = raw if isinstance(raw, dict) else {}
    total = number(scan.get("total"))
    done = number(scan.get("evaluated"))
    if total is None:
        total = number(progress.get("total"))
    if done is None:
        done = number(progress.get("done"))
    return total or 0.0, done or 0.0


def scan_outcome(scan: dict[str, Any]) -> str:
    """'failed' for a scan that errored or ran no attack (never "0 % ASR"), else its status."""
    status = str(scan.get("status") or "").upper()
    total, evaluated = scan_counts(scan)
    if status in ("FAILED", "ERROR", "CANCELLED", "INTERRUPTED"):
        return "failed"
    if status in ("RUNNING", "PENDING", "QUEUED", "STARTING"):
        return "running"
    if status in ("SUCCEEDED", "COMPLETED", "FINISHED", "DONE") and (total == 0 or evaluated == 0):
        return "failed"
    return "succeeded" if status else "unknown"


def results_frame(results: list[dict[str, Any]], skipped: Skipped) -> pd.DataFrame:
    """Scan result rows with the fields the Risk view needs; malformed ones are skipped."""
    rows = []
    for result in results:
        if not isinstance(result, dict):
            skipped.add("malformed result rows", 1)
            continue
        success = result.get("attack_success")
        if result.get("error") or success is None:
            skipped.add("errored or unjudged attacks (kept out of ASR)", 1)
            continue
        rows.append(
            {
                "risk_category": str(result.get("risk_category") or "unknown"),
                "strategy": str(result.get("strategy") or "unknown"),
                "severity": str(result.get("severity_label") or result.get("severity") or "—"),
                "attack_success": bool(success),
                "objective": str(result.get("objective") or ""),
                "prompt": str(result.get("converted_prompt") or result.get("prompt") or ""),
                "response": str(result.get("response") or ""),
                "reason": str(result.get("reason") or ""),
                "objective_id": str(result.get("objective_id") or ""),
                "request_ids": result.get("request_ids") or [],
            }
        )
    columns = [
        "risk_category",
        "strategy",
        "severity",
        "attack_success",
        "objective",
        "prompt",
        "response",
        "reason",
        "objective_id",
        "request_ids",
    ]
    return pd.DataFrame(rows, columns=columns)


def asr_table(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Attack success rate with n, grouped by ``by``."""
    if frame.empty:
        return pd.DataFrame(columns=[*by, "n", "successes", "asr"])
    grouped = frame.groupby(by, dropna=False)["attack_success"].agg(["count", "sum"])
    grouped = grouped.rename(columns={"count": "n", "sum": "successes"}).reset_index()
    grouped["asr"] = grouped["successes"] / grouped["n"]
    return grouped.sort_values(["asr", "n"], ascending=[False, False])


# -- traces ---------------------------------------------------------------------------------


def span_tree(spans: pd.DataFrame) -> list[tuple[int, dict[str, Any]]]:
    """Spans in depth-first order with their depth; orphans (a parent not on this page or
    missing) are shown at the top level; spans without an id, and cycles, are left out."""
    records = [r for r in spans.to_dict("records") if _text(r.get("span_id"))]
    ids = {r["span_id"] for r in records}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for record in records:
        parent = _text(record.get("parent_span_id"))
        children.setdefault(parent if parent in ids else None, []).append(record)
    out: list[tuple[int, dict[str, Any]]] = []
    stack = [(0, r) for r in reversed(children.get(None, []))]
    seen: set[str] = set()
    while stack:
        depth, record = stack.pop()
        if record["span_id"] in seen:
            continue
        seen.add(record["span_id"])
        out.append((depth, record))
        stack.extend((depth + 1, c) for c in reversed(children.get(record["span_id"], [])))
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
