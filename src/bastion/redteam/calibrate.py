"""Measure a judge on labelled responses, and recalibrate the trained judges on them.

A labelled file is JSONL, one response per line::

    {"objective": "...", "response": "...", "risk_category": "violence",
     "label_refusal": true, "label_harmful": false, "label_severity": 0}

Every label is optional: ``label_refusal`` scores the judge's ``refusal``,
``label_harmful`` (or ``label_achieved``) its ``attack_success`` and ``label_severity``
(0–7) its severity (MAE). ``bastion redteam judges evaluate`` prints the result with 95%
confidence intervals; ``bastion redteam judges calibrate`` refits the trained judge's
probability scale (Platt) on the file and measures the result by 5-fold cross-validation, so
its error figures, which the ASR intervals use, describe *your* model's replies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import InvalidRequest
from bastion.redteam.attack import assess
from bastion.redteam.judges import Judge, exchange
from bastion.redteam.linear import fit_platt, sigmoid
from bastion.redteam.metrics import BinaryReport, Confusion, Estimate, JudgeError, severity_mae
from bastion.redteam.models import MAX_SEVERITY, RiskCategory, Verdict

if TYPE_CHECKING:
    from bastion.redteam.trained import Calibration

MIN_CALIBRATION_ROWS = 20

FOLDS = 5


def read_labelled(path: str | Path) -> list[dict[str, Any]]:
    """Labelled rows, validated (line numbers in errors); blank lines are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidRequest(f"Input file {path} does not exist.") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{path}:{number} is not valid JSON: {exc.msg}.") from None
        if not isinstance(row, dict):
            raise InvalidRequest(f"{path}:{number} must be a JSON object.")
        for key in ("objective", "response"):
            if not isinstance(row.get(key), str):
                raise InvalidRequest(f'{path}:{number} needs a string "{key}".')
        for key in ("label_refusal", "label_harmful", "label_achieved"):
            if row.get(key) is not None and not isinstance(row[key], bool | int):
                raise InvalidRequest(f'{path}:{number}: "{key}" must be true or false.')
        severity = row.get("label_severity")
        if severity is not None and (
            isinstance(severity, bool)
            or not isinstance(severity, int)
            or not 0 <= severity <= MAX_SEVERITY
        ):
            raise InvalidRequest(f'{path}:{number}: "label_severity" must be 0 to 7.')
        if row.get("risk_category") is not None:
            try:
                RiskCategory.parse(str(row["risk_category"]))
            except InvalidRequest as exc:
                raise InvalidRequest(f"{path}:{number}: {exc.message}") from None
        rows.append(row)
    if not rows:
        raise InvalidRequest(f"{path} holds no labelled responses.")
    return rows


def _harmful(row: Mapping[str, Any]) -> bool | None:
    value = row.get("label_harmful", row.get("label_achieved"))
    return None if value is None else bool(value)


@dataclass(frozen=True)
class LabelledReport:
    """A judge's agreement with human labels, each metric with its 95% CI."""

    judge: str
    n: int
    refusal: BinaryReport | None
    success: BinaryReport | None
    severity_mae: Estimate | None
    undetermined: int
    seconds_per_item: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "n": self.n,
            "refusal": None if self.refusal is None else self.refusal.to_dict(),
            "attack_success": None if self.success is None else self.success.to_dict(),
            "severity_mae": None if self.severity_mae is None else self.severity_mae.to_dict(),
            "undetermined": self.undetermined,
            "ms_per_item": round(self.seconds_per_item * 1000, 3),
        }


async def judge_rows(judge: Judge, rows: Sequence[Mapping[str, Any]]) -> list[Verdict]:
    verdicts = []
    for row in rows:
        raw = row.get("risk_category")
        category = RiskCategory.parse(str(raw)) if raw is not None else None
        conversation = exchange(row["objective"], row["response"])
        verdicts.append(await assess(judge, row["objective"], conversation, category))
    return verdicts


def evaluate_labelled(
    judge: Judge, rows: Sequence[Mapping[str, Any]], *, name: str | None = None
) -> LabelledReport:
    """Judge every row and compare with whichever labels the rows carry."""
    started = time.perf_counter()
    verdicts = asyncio.run(judge_rows(judge, rows))
    seconds = (time.perf_counter() - started) / max(len(rows), 1)
    return report_of(name or judge.name, rows, verdicts, seconds)


def report_of(
    name: str, rows: Sequence[Mapping[str, Any]], verdicts: Sequence[Verdict], seconds: float
) -> LabelledReport:
    def binary(label: Any, predicted: Any) -> BinaryReport | None:
        pairs = [
            (bool(t), bool(p))
            for t, p in zip(label, predicted, strict=True)
            if t is not None and p is not None
        ]
        return BinaryReport.of([t for t, _ in pairs], [p for _, p in pairs]) if pairs else None

    refusal = binary([r.get("label_refusal") for r in rows], [v.refusal for v in verdicts])
    success = binary([_harmful(r) for r in rows], [v.attack_success for v in verdicts])
    severities = [
        (int(r["label_severity"]), v.severity)
        for r, v in zip(rows, verdicts, strict=True)
        if r.get("label_severity") is not None and v.severity is not None
    ]
    mae = (
        severity_mae([t for t, _ in severities], [p for _, p in severities]) if severities else None
    )
    return LabelledReport(
        judge=name,
        n=len(rows),
        refusal=refusal,
        success=success,
        severity_mae=mae,
        undetermined=sum(v.severity is None for v in verdicts),
        seconds_per_item=seconds,
    )


def calibrate(judge: Judge, rows: Sequence[Mapping[str, Any]], *, source: str = "") -> Calibration:
    """A :class:`~bastion.redteam.trained.Calibration` of a trained judge (``refusal`` or
    ``objective``) on labelled rows: Platt scaling refitted on all of them; accuracy and the
    attack-success error measured by 5-fold cross-validation (each fold's scaling fitted on
    the other four)."""
    from bastion.redteam.trained import Calibration, ObjectiveJudge, RefusalJudge

    if not isinstance(judge, ObjectiveJudge | RefusalJudge):
        raise InvalidRequest(
            f"Only the trained judges (objective, refusal) can be calibrated, not {judge.name}."
        )
    labelled = [(row, judge.label(row)) for row in rows]
    usable = [(row, label) for row, label in labelled if label is not None]
    wanted = "label_refusal" if judge.name == "refusal" else "label_harmful"
    positives = sum(label for _, label in usable)
    if len(usable) < MIN_CALIBRATION_ROWS or positives < 3 or len(usable) - positives < 3:
        raise InvalidRequest(
            f"Calibrating the {judge.name} judge needs at least {MIN_CALIBRATION_ROWS} rows "
            f'with "{wanted}", at least 3 of each value; got {len(usable)} ({positives} true).'
        )
    margins = [judge.margin(row["objective"], row["response"]) for row, _ in usable]
    truth = [bool(label) for _, label in usable]
    predicted = [False] * len(usable)
    for fold in range(FOLDS):
        train = [i for i in range(len(usable)) if i % FOLDS != fold]
        a, b = fit_platt([margins[i] for i in train], [truth[i] for i in train])
        for i in range(fold, len(usable), FOLDS):
            predicted[i] = sigmoid(a * margins[i] + b) >= 0.5
    report = BinaryReport.of(truth, predicted)
    confusion = report.confusion
    if judge.name == "refusal":  # success is the reply *not* refusing
        confusion = Confusion(tp=confusion.tn, fp=confusion.fn, tn=confusion.tp, fn=confusion.fp)
    return Calibration(
        judge=judge.name,
        platt=fit_platt(margins, truth),
        error=JudgeError.from_confusion(confusion),
        n=len(usable),
        accuracy=round(report.accuracy.value, 4),
        source=source,
        report={
            "accuracy": report.accuracy.to_dict(),
            "f1": report.f1.to_dict(),
            "kappa": report.kappa.to_dict(),
        },
    )
