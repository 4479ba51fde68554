"""system.redteam.* tables: registration, the writer sink, SQL over them, the joined view."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_scan_unit import TOKEN, StubGateway

from bastion.governance.securables import SecurableType
from bastion.platform import Platform
from bastion.query import QueryEngine
from bastion.redteam.scan import ScanConfig, Scanner
from bastion.redteam.store import (
    RESULTS,
    RESULTS_JOINED,
    SCANS,
    WriterSink,
    ensure_redteam_tables,
    read_results,
    read_scans,
)


def admin(platform: Platform) -> Any:
    record = platform.identity.find("admin")
    assert record is not None
    return platform.identity_cache.caller(record.id)


def sql(platform: Platform, statement: str) -> list[dict[str, Any]]:
    result = QueryEngine(platform).execute(admin(platform), statement)
    rows: list[dict[str, Any]] = result.table.to_pylist()
    return rows


def test_tables_registered_and_asr_equals_sql(platform: Platform) -> None:
    ensure_redteam_tables(platform)
    ensure_redteam_tables(platform)  # idempotent
    names = {i.full_name for i in platform.governance.list_securables(SecurableType.TABLE)}
    assert {SCANS.full_name, RESULTS.full_name, RESULTS_JOINED} <= names

    config = ScanConfig.from_parameters(
        {
            "endpoint": "flaky",
            "risk_categories": "violence,hate_unfairness",
            "strategies": "flip,base64",
            "num_objectives": 3,
            "judge": "refusal",
        }
    )
    with StubGateway() as stub:
        report = Scanner(
            config, host=stub.url, token=TOKEN, sink=WriterSink(platform), requester="admin"
        ).run()

    stored = read_results(platform, report.scan_id)
    assert [r["result_id"] for r in stored] == [r["result_id"] for r in report.rows]
    (record,) = read_scans(platform, [report.scan_id])
    assert record["status"] == "completed" and record["errors"] > 0

    (row,) = sql(
        platform,
        "SELECT count(*) AS total, count(attack_success) AS evaluated, "
        "count_if(attack_success) AS succeeded, count_if(error IS NOT NULL) AS errors, "
        "round(100.0 * count_if(attack_success) / count(attack_success), 2) AS asr "
        f"FROM system.redteam.results WHERE scan_id = '{report.scan_id}'",
    )
    assert row["asr"] == report.summary.asr == record["asr"]
    assert (row["total"], row["evaluated"], row["succeeded"], row["errors"]) == (
        record["total"],
        record["evaluated"],
        record["succeeded"],
        record["errors"],
    )
    per_cell = sql(
        platform,
        "SELECT risk_category, complexity, "
        "round(100.0 * count_if(attack_success) / count(attack_success), 2) AS asr "
        f"FROM system.redteam.results WHERE scan_id = '{report.scan_id}' "
        "GROUP BY risk_category, complexity",
    )
    card = json.loads(record["scorecard"])
    joint = {e["risk_category"]: e for e in card["joint_risk_attack_summary"]}
    for cell in per_cell:
        key = "baseline_asr" if cell["complexity"] == "baseline" else "easy_complexity_asr"
        assert joint[cell["risk_category"]][key] == cell["asr"]

    joined = sql(
        platform,
        f"SELECT result_id, p_request_id FROM {RESULTS_JOINED} WHERE scan_id = '{report.scan_id}'",
    )
    assert len(joined) == len(report.rows)  # no payload tables here: p_* are NULL
    assert all(r["p_request_id"] is None for r in joined)


@pytest.mark.parametrize("column", ["conversation", "request_ids"])
def test_nested_columns_are_queryable(platform: Platform, column: str) -> None:
    ensure_redteam_tables(platform)
    rows = sql(platform, f"SELECT {column} FROM system.redteam.results LIMIT 1")
    assert rows == []
