"""The judge columns of system.redteam.*: a table created before them keeps working, and a
scan with the default (objective) judge stores its version, confidence and ASR interval."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from test_scan_store import sql
from test_scan_unit import TOKEN, StubGateway

from bastion.platform import Platform
from bastion.redteam.scan import ScanConfig, Scanner
from bastion.redteam.store import (
    RESULTS,
    SCANS,
    WriterSink,
    ensure_redteam_tables,
    read_results,
    read_scans,
)
from bastion.tables import delta
from bastion.tables.system import define_table

NEW_SCAN_COLUMNS = {
    "judge_version",
    "judge_accuracy",
    "judge_sensitivity",
    "judge_specificity",
    "asr_corrected",
    "asr_ci_lower",
    "asr_ci_upper",
    "escalated",
}
NEW_RESULT_COLUMNS = {"judge_version", "confidence", "escalated"}


def _old_table(platform: Platform, table: Any, new: set[str], row: dict[str, Any]) -> None:
    """The table as the previous version created it, with one row."""
    old = define_table(
        table.full_name, table.key, table.comment, [c for c in table.columns if c[0] not in new]
    )
    uri = platform.table_storage.location(table.full_name)
    created = delta.create_table_if_missing(uri, old.schema, name=table.full_name)
    data = pa.Table.from_pylist([{n: row.get(n) for n in old.schema.names}], schema=old.schema)
    delta.append(created, data)


def test_tables_created_before_the_judge_columns_keep_working(platform: Platform) -> None:
    _old_table(platform, SCANS, NEW_SCAN_COLUMNS, {"scan_id": "old", "status": "completed"})
    _old_table(
        platform,
        RESULTS,
        NEW_RESULT_COLUMNS,
        {"result_id": "old:1", "scan_id": "old", "n": 1, "strategy": "flip"},
    )
    ensure_redteam_tables(platform)
    for table in (SCANS, RESULTS):
        uri = platform.table_storage.location(table.full_name)
        opened = delta.open_table(uri)
        assert opened is not None
        assert {f.name for f in opened.schema().fields} == set(table.schema.names)
    ensure_redteam_tables(platform)  # idempotent once upgraded

    config = ScanConfig.from_parameters(
        {"endpoint": "target", "risk_categories": "violence", "strategies": "base64"}
    )
    assert config.judge == "objective"  # the default judge
    with StubGateway() as stub:
        report = Scanner(config, host=stub.url, token=TOKEN, sink=WriterSink(platform)).run()

    scans = {r["scan_id"]: r for r in read_scans(platform)}
    assert scans["old"]["judge_version"] is None and scans["old"]["status"] == "completed"
    new = scans[report.scan_id]
    assert new["judge_version"] == "objective-1.1"
    assert 0.5 < new["judge_accuracy"] <= 1.0
    assert 0 < new["judge_sensitivity"] <= 1 and 0 < new["judge_specificity"] <= 1
    assert new["asr_ci_lower"] <= new["asr_corrected"] <= new["asr_ci_upper"]
    assert new["escalated"] == 0
    card = json.loads(new["scorecard"])
    assert card["judge"]["version"] == "objective-1.1"
    assert card["judge"]["asr_ci_method"].startswith("rogan-gladen")
    assert card["risk_category_summary"][0]["overall_asr_ci_upper"] == new["asr_ci_upper"]

    rows = read_results(platform, report.scan_id)
    assert rows and all(r["judge_version"] == "objective-1.1" for r in rows)
    assert all(0.5 <= r["confidence"] <= 1 and r["escalated"] is False for r in rows)
    (old,) = sql(
        platform,
        "SELECT confidence, judge_version FROM system.redteam.results WHERE n = 1 "
        "AND scan_id = 'old'",
    )
    assert old == {"confidence": None, "judge_version": None}


def test_a_scan_escalates_unsure_verdicts_and_uses_a_calibration() -> None:
    from bastion.errors import InvalidRequest
    from bastion.redteam import datasets
    from bastion.redteam.calibrate import calibrate
    from bastion.redteam.trained import ObjectiveJudge

    calibration = calibrate(ObjectiveJudge(), datasets.bastion_labelled(), source="own").to_json()
    config = ScanConfig.from_parameters(
        {
            "endpoint": "target",
            "risk_categories": "violence",
            "strategies": "base64",
            "num_objectives": 2,
            "judge_endpoint": "target",  # with a trained judge: where unsure verdicts go
            "escalate_below": 1.0,  # every verdict is unsure
            "judge_calibration": calibration,
        }
    )
    with StubGateway() as stub:
        report = Scanner(config, host=stub.url, token=TOKEN).run()
        judge_calls = [b for _, b in stub.calls if b["client_request_id"].endswith(":judge")]
    # the stub answers the rubric with prose, never JSON: the trained verdicts stand, marked
    assert report.rows and all(r["escalated"] is True for r in report.rows)
    assert all("no LLM verdict" in r["reason"] for r in report.rows)
    assert len(judge_calls) == 3 * len(report.rows)  # one ask and two re-asks each
    assert report.record["escalated"] == len(report.rows)
    assert report.record["judge_version"] == "objective-1.1+cal"
    judge = report.document["scorecard"]["judge"]
    assert judge["heldout_protocol"].startswith("recalibrated on 153 labelled responses")
    assert ScanConfig.from_parameters(config.to_parameters()).judge_calibration == calibration
    wrong = {**calibration, "judge": "refusal"}
    with pytest.raises(InvalidRequest, match="calibration is for refusal"):
        ScanConfig.from_parameters({"endpoint": "target", "judge_calibration": wrong})
