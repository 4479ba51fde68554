"""Metrics with confidence intervals, the judge-error-corrected ASR, the numpy logistic
regression, and training from a small copy of the shipped data."""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bastion.redteam import datasets
from bastion.redteam.features import refusal_features, tfidf
from bastion.redteam.linear import LinearModel, fit_logistic, fit_platt
from bastion.redteam.metrics import (
    BinaryReport,
    Confusion,
    JudgeError,
    asr_estimate,
    rogan_gladen,
    severity_mae,
    wilson,
)
from bastion.redteam.train import (
    OBJECTIVE_GRID,
    NestedSelection,
    ObjectiveMatrix,
    ObjectiveRow,
    train,
)


def test_wilson_matches_published_values() -> None:
    # Newcombe (1998), table I: 0/10 -> 0 to 0.2775; 81/263 -> 0.2553 to 0.3662
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson(81, 263)
    assert (low, high) == (pytest.approx(0.2553, abs=1e-4), pytest.approx(0.3662, abs=1e-4))
    assert wilson(0, 0) == (0.0, 1.0)


def test_binary_report_counts_kappa_and_intervals() -> None:
    truth = [True] * 40 + [False] * 60
    predicted = [True] * 36 + [False] * 4 + [False] * 54 + [True] * 6
    report = BinaryReport.of(truth, predicted)
    assert report.confusion == Confusion(tp=36, fp=6, tn=54, fn=4)
    assert report.accuracy.value == 0.9
    assert report.precision.value == pytest.approx(36 / 42)
    assert report.recall.value == 0.9
    # kappa by hand: po = .9, pe = (.42*.4 + .58*.6) = .516
    assert report.kappa.value == pytest.approx((0.9 - 0.516) / (1 - 0.516))
    for estimate in (report.accuracy, report.f1, report.kappa):
        assert estimate.low < estimate.value < estimate.high
    perfect = BinaryReport.of(truth, truth)
    assert perfect.kappa.value == 1.0 and perfect.f1.value == 1.0
    # the same input gives the same bootstrap interval
    assert BinaryReport.of(truth, predicted).f1 == report.f1


def test_severity_mae() -> None:
    mae = severity_mae([0, 7, 4, 2], [1, 6, 4, 2])
    assert mae.value == 0.5 and mae.low <= 0.5 <= mae.high


def test_rogan_gladen_corrects_a_biased_judge() -> None:
    assert rogan_gladen(0.3, 0.9, 0.9) == pytest.approx(0.25)
    assert rogan_gladen(0.05, 0.9, 0.9) == 0.0  # clipped
    assert rogan_gladen(0.4, 0.5, 0.5) == 0.4  # a judge no better than chance: unchanged


def test_asr_interval_widens_with_judge_uncertainty() -> None:
    plain = asr_estimate(30, 100, None)
    assert plain.method == "wilson" and plain.corrected == 0.3
    assert (plain.low, plain.high) == pytest.approx(wilson(30, 100))
    well_measured = asr_estimate(30, 100, JudgeError(tp=900, fn=100, tn=900, fp=100))
    barely_measured = asr_estimate(30, 100, JudgeError(tp=9, fn=1, tn=9, fp=1))
    assert well_measured.corrected == pytest.approx(0.25)
    for estimate in (well_measured, barely_measured):
        assert estimate.method == "rogan-gladen"
        assert estimate.low <= estimate.corrected <= estimate.high
    width = [e.high - e.low for e in (plain, well_measured, barely_measured)]
    assert width[0] < width[1] < width[2]
    assert asr_estimate(30, 100, JudgeError(9, 1, 9, 1)) == barely_measured  # seeded
    assert asr_estimate(0, 0, None).high == 1.0
    assert well_measured.percent()["asr_corrected"] == 25.0


def test_logistic_regression_reaches_the_optimum() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x @ np.array([2.0, -1.0, 0.0]) + 0.5 + rng.normal(size=400) > 0).astype(float)
    samples = [{f"f{j}": float(v) for j, v in enumerate(row)} for row in x]
    l2 = 1e-2
    weights, bias = fit_logistic(samples, list(y), l2=l2)
    w = np.array([weights.get(f"f{j}", 0.0) for j in range(3)])
    p = 1 / (1 + np.exp(-(x @ w + bias)))
    gradient = x.T @ (p - y) / len(y) + l2 * w
    assert np.abs(gradient).max() < 1e-4 and abs(float(np.mean(p - y))) < 1e-4
    assert w[0] > 1.0 and w[1] < -0.5 and abs(w[2]) < 0.3
    model = LinearModel(weights, bias)
    assert LinearModel.from_json(model.to_json()).margin({"f0": 1.0}) == pytest.approx(
        model.margin({"f0": 1.0}), abs=1e-4
    )


def test_platt_scaling_is_finite_on_separable_scores() -> None:
    a, b = fit_platt([-2.0, -1.0, 1.0, 2.0], [False, False, True, True])
    assert 0 < a < 50 and math.isfinite(b)


def _subset(source: Path, target: Path) -> None:
    """A small copy of the data folder: every 15th XSTest and every 4th JAILJUDGE row."""
    for folder in ("xstest", "jailjudge"):
        (target / folder).mkdir(parents=True)
    paths = sorted((source / "xstest").glob("xstest_v2_completions_*.csv"))
    for path in [*paths, source / "jailjudge" / "JAILJUDGEmini.csv"]:
        step = 4 if "JAILJUDGE" in path.name else 15
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        out = target / path.parent.name / path.name
        with out.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows[::step])
    shutil.copytree(source / "bastion", target / "bastion")


def test_training_writes_models_that_judge(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _subset(datasets.DATA_DIR, data)
    out = tmp_path / "models"
    run = train(out, data_dir=data, log=lambda _: None)
    assert len(run.refusal_examples) == len(datasets.xstest(data)) == 150
    assert {h.example.source for h in run.objective_heldout} == {
        "jailjudge:S14",
        "jailjudge:S3",
        "jailjudge:S5",
        "jailjudge:S7",
    }
    refusal = json.loads((out / "refusal.json").read_text())
    assert refusal["heldout"]["n"] == 150 and refusal["model"]["weights"]
    assert refusal["heldout"]["protocol"].startswith("leave-one-model-out")
    model = LinearModel.from_json(refusal["model"])
    assert model.probability(refusal_features("I'm sorry, but I can't help with that.")) > 0.5
    assert model.probability(refusal_features("Sure! Here is a haiku about autumn.")) < 0.5
    # the same data gives the same model
    again = train(None, data_dir=data, log=lambda _: None)
    assert again.documents["refusal"]["model"] == refusal["model"]


def _objective_rows(per_category: int) -> list[ObjectiveRow]:
    by_category: dict[str, list[datasets.ObjectiveExample]] = {}
    for example in datasets.jailjudge():
        by_category.setdefault(example.source, []).append(example)
    return [
        ObjectiveRow(e, 0.0, refusal_features(e.response))
        for examples in by_category.values()
        for e in examples[:per_category]
    ]


def test_objective_matrix_fits_what_the_judge_scores() -> None:
    rows = _objective_rows(40)
    keep = [r.example.source != "jailjudge:S5" for r in rows]
    model = ObjectiveMatrix(rows).fit(keep, OBJECTIVE_GRID[-1])
    assert model.idf and all(name[:2] in ("w:", "t:") for name in model.idf)
    # the array path gives the model that the judge's per-reply TF-IDF would have fitted
    kept = [r for r, k in zip(rows, keep, strict=True) if k]
    weights, bias = fit_logistic(
        [tfidf(r.features, dict(model.idf)) for r in kept],
        [r.example.achieved for r in kept],
        l2=OBJECTIVE_GRID[-1].l2,
    )
    assert bias == pytest.approx(model.bias, abs=1e-4)
    for r in rows[::7]:
        assert LinearModel(weights, bias, model.idf).margin(r.features) == pytest.approx(
            model.margin(r.features), abs=1e-3
        )


def test_nested_selection_never_reads_the_heldout_labels() -> None:
    rows = _objective_rows(40)
    categories = sorted({r.example.source for r in rows})
    held = NestedSelection(rows, categories, lambda _: None)
    first = held.heldout()
    # the same rows with the labels of one category flipped: that category's own verdicts
    # (the setting its fold chose, and its scores) cannot change
    flipped = [
        ObjectiveRow(
            replace(r.example, achieved=not r.example.achieved), r.refusal, r.refusal_features
        )
        if r.example.source == "jailjudge:S5"
        else r
        for r in rows
    ]
    again = NestedSelection(flipped, categories, lambda _: None)
    second = again.heldout()
    assert again.chosen["jailjudge:S5"] == held.chosen["jailjudge:S5"]
    before = [h.margin for h in first if h.example.source == "jailjudge:S5"]
    after = [h.margin for h in second if h.example.source == "jailjudge:S5"]
    assert before == after and len(before) == 40
    assert set(held.to_dict()["grid"]) == {config.describe() for config in OBJECTIVE_GRID}
