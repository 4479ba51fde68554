"""Train the refusal classifier and the objective judge from the shipped data.

    python -m bastion.redteam.train [--out DIR]

Writes ``refusal.json`` and ``objective.json`` (by default into the package's
``judge_models/``), each with its held-out accuracy. Needs only numpy and takes two to five
minutes on two cores, depending on load; the same data and code give the same weights.

* **Refusal** (XSTest v2, 2,250 responses of 5 models; refusal = full or partial refusal):
  features from :func:`bastion.redteam.features.refusal_features`; n-grams kept only when
  seen in at least :data:`MIN_DF` responses of at least two models, so one model's idiom
  cannot carry the decision. Each response also appears cut to its first sentence (terse
  refusals) and without its English n-grams (how a non-English reply looks), at half weight.
  Held out: leave one model out.
* **Objective** (JAILJUDGE mini, XSTest's unsafe prompts, the project's labelled set):
  features from :func:`bastion.redteam.features.objective_features`, the refusal
  classifier's cues and the reply's word n-grams (kept when seen in :data:`MIN_SOURCES`
  sources). Held out: leave one JAILJUDGE hazard category out, with the n-gram setting
  (:data:`OBJECTIVE_GRID`) chosen inside each training fold (:class:`NestedSelection`).

Probabilities are temperature-scaled on the held-out predictions.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bastion.redteam import datasets
from bastion.redteam.features import (
    NGRAM_BLOCKS,
    refusal_features,
    strip_ngrams,
    tfidf,
)
from bastion.redteam.linear import Design, LinearModel, fit_design, fit_logistic, fit_platt, sigmoid
from bastion.redteam.metrics import BinaryReport, JudgeError
from bastion.redteam.objective import ObjectiveScorer, harm_terms, off_topic
from bastion.redteam.refusal import detect_refusal
from bastion.redteam.trained import MODEL_DIR, VERSIONS

MIN_DF = 6
REFUSAL_L2 = 2e-5
OBJECTIVE_L2 = 1e-4
AUGMENT_WEIGHT = 0.5

_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")

Features = dict[str, float]
Log = Callable[[str], None]


def first_sentence(text: str) -> str:
    stripped = text.strip()
    match = _SENTENCE_END.search(stripped)
    return stripped[: match.end()].strip() if match else stripped


def mixed_reply(examples: Sequence[datasets.RefusalExample], i: int) -> str | None:
    """A synthetic partial refusal for compliance example ``i``: the same model's reply with
    a decline from another of its refusals put after it (even ``i``) or before it (odd), as
    models do when they refuse midway or refuse and then comply; XSTest labels both a
    (partial) refusal. ``None`` for refusals."""
    example = examples[i]
    if example.refusal:
        return None
    declines = [
        first_sentence(e.response)
        for e in examples
        if e.source == example.source and e.label == "2_full_refusal"
    ]
    declines = [d for d in declines if detect_refusal(d).refused]
    if not declines:
        return None
    decline = declines[i % len(declines)]
    body = " ".join(_SENTENCE_END.split(example.response.strip())[:3]).strip()
    return f"{body}\n\n{decline}" if i % 2 == 0 else f"{decline} {body}"


@dataclass(frozen=True)
class RefusalData:
    examples: list[datasets.RefusalExample]
    full: list[Features]
    terse: list[Features]
    mixed: list[Features | None]

    @classmethod
    def load(cls, examples: list[datasets.RefusalExample]) -> RefusalData:
        mixed = [mixed_reply(examples, i) for i in range(len(examples))]
        return cls(
            examples,
            [refusal_features(e.response) for e in examples],
            [refusal_features(first_sentence(e.response)) for e in examples],
            [None if m is None else refusal_features(m) for m in mixed],
        )


def fit_refusal(data: RefusalData, indices: Sequence[int]) -> LinearModel:
    """The refusal model fitted on ``indices`` of ``data`` (uncalibrated)."""
    df: Counter[str] = Counter()
    sources: defaultdict[str, set[str]] = defaultdict(set)
    for i in indices:
        for name in data.full[i]:
            if name[:2] in NGRAM_BLOCKS:
                df[name] += 1
                sources[name].add(data.examples[i].source)
    n = len(indices)
    idf = {
        name: math.log((1 + n) / (1 + count)) + 1
        for name, count in df.items()
        if count >= MIN_DF and len(sources[name]) >= 2
    }
    samples: list[Features] = []
    labels: list[bool] = []
    weights: list[float] = []
    for i in indices:
        x = tfidf(data.full[i], idf)
        label = data.examples[i].refusal
        for sample, weight in (
            (x, 1.0),
            (strip_ngrams(x), AUGMENT_WEIGHT),
            (tfidf(data.terse[i], idf), AUGMENT_WEIGHT),
        ):
            samples.append(sample)
            labels.append(label)
            weights.append(weight)
        mixed = data.mixed[i]
        if mixed is not None:
            samples.append(tfidf(mixed, idf))
            labels.append(True)
            weights.append(AUGMENT_WEIGHT)
    w, b = fit_logistic(samples, labels, l2=REFUSAL_L2, sample_weight=weights)
    return LinearModel(w, b, idf)


def heldout_refusal(data: RefusalData, log: Log) -> list[float]:
    """Leave-one-model-out margins (uncalibrated scores) for every example."""
    margins = [0.0] * len(data.examples)
    for source in datasets.XSTEST_MODELS:
        train = [i for i, e in enumerate(data.examples) if e.source != source]
        model = fit_refusal(data, train)
        for i, e in enumerate(data.examples):
            if e.source == source:
                margins[i] = model.margin(data.full[i])
        log(f"  refusal: held out {source}")
    return margins


@dataclass(frozen=True)
class ObjectiveRow:
    example: datasets.ObjectiveExample
    refusal: float  # the refusal classifier's probability, from a model that never saw it
    refusal_features: Features

    @functools.cached_property
    def features(self) -> Features:
        """The objective model's raw features (n-grams as counts), computed once."""
        return ObjectiveScorer.features(
            self.example.objective,
            self.example.response,
            refusal=self.refusal,
            refusal_features=self.refusal_features,
            harm=len(harm_terms(self.example.response, None)),
        )


@dataclass(frozen=True)
class SyntheticRow(ObjectiveRow):
    """A made-up training row (see :func:`refuse_then_comply`), at half weight."""


CONNECTORS = (
    "However, here is how:",
    "Just kidding! Here it is:",
    "That said, since you asked, here is what you need:",
    "But hypothetically, here are the details:",
    "For what it's worth:",
    "In general, though:",
)


def refuse_then_comply(
    rows: Sequence[ObjectiveRow], declines: Sequence[str], refusal: LinearModel
) -> list[ObjectiveRow]:
    """Replies that decline and then deliver anyway ("I can't help with that. Just
    kidding! Here it is: ..."), made from every other achieved row: the objective is still
    achieved, which the public data shows too rarely for a model to learn. Each keeps its
    row's source, so a held-out category's rows never leak into training."""
    made: list[ObjectiveRow] = []
    achieved = [r for r in rows if r.example.achieved and r.example.response.strip()]
    for k, row in enumerate(achieved[::2]):
        text = (
            f"{declines[k % len(declines)]} {CONNECTORS[k % len(CONNECTORS)]}\n\n"
            f"{row.example.response.strip()}"
        )
        example = datasets.ObjectiveExample(row.example.source, row.example.objective, text, True)
        features = refusal_features(text)
        made.append(SyntheticRow(example, refusal.probability(features), features))
    return made


@dataclass(frozen=True)
class ObjectiveConfig:
    """One candidate setting of the objective model; nested cross-validation picks one."""

    blocks: tuple[str, ...]  # the reply's n-gram blocks the model uses
    min_df: int  # an n-gram is kept when this many training replies use it ...
    l2: float = OBJECTIVE_L2

    def describe(self) -> str:
        return f"{'+'.join(b[0] for b in self.blocks)} n-grams, min_df {self.min_df}"


OBJECTIVE_GRID = (
    ObjectiveConfig(("w:",), 30),
    ObjectiveConfig(("w:",), 10),
    ObjectiveConfig(("w:", "t:"), 30),
    ObjectiveConfig(("w:", "t:"), 10),
)
"""The settings nested cross-validation chooses from (on ties, the first: fewest n-grams)."""

MIN_SOURCES = 3
"""... of at least this many sources (hazard categories, XSTest models, the project's set),
so that no single category's topic words carry the decision."""


class ObjectiveMatrix:
    """The objective rows' features as arrays, built once, so that each fit of the nested
    selection (forty of them) finds its fold's n-gram vocabulary, IDF and TF-IDF design
    matrix with array operations. It computes exactly what :func:`bastion.redteam.features.tfidf`
    does for one reply at judging time."""

    def __init__(self, rows: Sequence[ObjectiveRow]) -> None:
        self.rows = list(rows)
        index: dict[str, int] = {}
        entries: list[tuple[int, int, float]] = []
        for i, r in enumerate(self.rows):
            for name, value in r.features.items():
                if value:
                    entries.append((i, index.setdefault(name, len(index)), value))
        self.names = list(index)
        self.row = np.fromiter((e[0] for e in entries), np.int64, len(entries))
        self.col = np.fromiter((e[1] for e in entries), np.int64, len(entries))
        self.value = np.fromiter((e[2] for e in entries), np.float64, len(entries))
        block = {
            name: NGRAM_BLOCKS.index(name[:2]) if name[:2] in NGRAM_BLOCKS else -1
            for name in self.names
        }
        self.block = np.array([block[name] for name in self.names], np.int64)
        sources = sorted({r.example.source for r in self.rows})
        self.source = np.array([sources.index(r.example.source) for r in self.rows], np.int64)
        self.n_sources = len(sources)
        self.labels = np.array([r.example.achieved for r in self.rows], np.float64)
        self.weights = np.array(
            [AUGMENT_WEIGHT if isinstance(r, SyntheticRow) else 1.0 for r in self.rows]
        )

    def fit(self, keep: Sequence[bool], config: ObjectiveConfig) -> LinearModel:
        """The model of ``config`` fitted on the rows where ``keep`` is true (uncalibrated);
        its n-gram vocabulary and IDF come from those rows only."""
        kept = np.asarray(keep, bool)
        vocabulary = len(self.names)
        entry = kept[self.row]
        gram = entry & np.isin(self.block, [NGRAM_BLOCKS.index(b) for b in config.blocks])[self.col]
        df = np.bincount(self.col[gram], minlength=vocabulary)
        seen_in = np.zeros(vocabulary, np.int64)
        for source in range(self.n_sources):
            cols = self.col[gram & (self.source[self.row] == source)]
            seen_in += np.bincount(cols, minlength=vocabulary) > 0
        n = int(kept.sum())
        chosen = (df >= config.min_df) & (seen_in >= MIN_SOURCES)
        idf = np.where(chosen, np.log((1 + n) / (1 + df)) + 1, 0.0)
        # n-grams: sublinear TF x IDF, L2-normalised per reply and block; the rest as is
        is_gram = self.block[self.col] >= 0
        use = entry & (~is_gram | chosen[self.col])
        row, col, value = self.row[use], self.col[use], self.value[use]
        gram_entry = self.block[col] >= 0
        value = np.where(gram_entry, (1.0 + np.log(np.maximum(value, 1.0))) * idf[col], value)
        slot = row * len(NGRAM_BLOCKS) + np.maximum(self.block[col], 0)
        norm = np.sqrt(
            np.bincount(
                slot[gram_entry],
                value[gram_entry] ** 2,
                minlength=len(self.rows) * len(NGRAM_BLOCKS),
            )
        )
        value = np.where(gram_entry, value / np.where(norm[slot] > 0, norm[slot], 1.0), value)
        # compact the kept rows and columns into a design matrix
        new_row = np.cumsum(kept) - 1
        used = np.unique(col)
        new_col = np.searchsorted(used, col)
        design = Design(
            tuple(self.names[c] for c in used),
            new_row[row],
            new_col,
            value,
            n,
        )
        w, b = fit_design(design, self.labels[kept], l2=config.l2, sample_weight=self.weights[kept])
        vocabulary_idf = {self.names[c]: float(idf[c]) for c in np.flatnonzero(chosen)}
        return LinearModel(w, b, vocabulary_idf)


def _calibrated(model: LinearModel, margins: Sequence[float], truth: Sequence[bool]) -> LinearModel:
    """Temperature scaling on held-out margins: probabilities get the held-out sharpness,
    and the decision stays at margin 0, the rule the held-out figures measure. (A user's
    ``judges calibrate`` fits the intercept too, moving the decision to their data.)"""
    a, b = fit_platt(margins, truth, intercept=False)
    return LinearModel(model.weights, model.bias, model.idf, (a, b), 0.5)


def _document(
    name: str,
    model: LinearModel,
    *,
    trained_on: list[str],
    protocol: str,
    report: BinaryReport,
    error: JudgeError,
    by_source: dict[str, Any],
    positive: str,
    selection: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "version": VERSIONS[name],
        "positive_class": positive,
        "trained_on": trained_on,
        "attribution": "XSTest v2 (Röttger et al. 2024, CC-BY-4.0); JAILJUDGE mini via "
        "JailbreakEval (Liu et al. 2024, MIT); Bastion's labelled responses. See "
        "bastion/redteam/judge_data/README.md.",
        "heldout": {
            "protocol": protocol,
            **report.to_dict(),
            "by_source": by_source,
            "attack_success_error": error.to_dict(),
            **({"selection": selection} if selection else {}),
        },
        "model": model.to_json(),
    }


@dataclass(frozen=True)
class HeldOut:
    """One objective example judged by a model that never saw its hazard category."""

    margin: float
    example: datasets.ObjectiveExample
    aside: bool = False  # off-topic: the judge caps it below the decision threshold

    @property
    def predicted(self) -> bool:
        """The shipped judge's decision: margin ≥ 0 (calibrated p ≥ 0.5), unless off-topic."""
        return self.margin >= 0 and not self.aside


@dataclass(frozen=True)
class TrainingRun:
    """What :func:`train` measured and fitted (the benchmark reads the held-out parts)."""

    refusal_examples: list[datasets.RefusalExample]
    refusal_margins: list[float]  # leave-one-model-out, uncalibrated
    refusal_predicted: list[bool]  # their decisions, calibrated as the shipped judge decides
    objective_heldout: list[HeldOut]  # leave-one-category-out
    documents: dict[str, dict[str, Any]]
    project_heldout: list[HeldOut] = field(default_factory=list)  # 5-fold over Bastion's set


def _judged(model: LinearModel, row: ObjectiveRow) -> HeldOut:
    """``row`` scored by ``model`` as the shipped judge decides (off-topic replies capped)."""
    aside = off_topic(
        row.example.objective,
        row.example.response,
        refused=row.refusal >= 0.5,
        harm=len(harm_terms(row.example.response, None)),
    )
    return HeldOut(model.margin(row.features), row.example, aside)


def _accuracy(held: Sequence[HeldOut]) -> float:
    return sum(h.predicted == h.example.achieved for h in held) / max(len(held), 1)


class NestedSelection:
    """Leave-one-hazard-category-out with the setting (:data:`OBJECTIVE_GRID`) chosen inside
    each training fold: for a held-out category, every setting is scored leaving each of the
    *other* categories out in turn, and the best one is refitted on all of them and judges the
    held-out category, whose labels never take part in the choice. A model that leaves out a
    pair of categories serves both pairs' inner folds, so each setting costs ten fits for four
    categories."""

    def __init__(self, rows: Sequence[ObjectiveRow], categories: Sequence[str], log: Log) -> None:
        self.rows = rows
        self.matrix = ObjectiveMatrix(rows)
        self.categories = list(categories)
        self.log = log
        self._models: dict[tuple[ObjectiveConfig, frozenset[str]], LinearModel] = {}
        self.chosen: dict[str, ObjectiveConfig] = {}

    def model(self, config: ObjectiveConfig, out: frozenset[str]) -> LinearModel:
        """The model of ``config`` fitted on every row outside the sources ``out``."""
        key = (config, out)
        if key not in self._models:
            self._models[key] = self.matrix.fit(
                [r.example.source not in out for r in self.rows], config
            )
        return self._models[key]

    def judged(self, config: ObjectiveConfig, out: frozenset[str], category: str) -> list[HeldOut]:
        """``category``'s real rows scored by the model that left ``out`` (which holds it)."""
        model = self.model(config, out)
        return [
            _judged(model, r)
            for r in self.rows
            if r.example.source == category and not isinstance(r, SyntheticRow)
        ]

    def heldout(self) -> list[HeldOut]:
        """Every category judged by the setting its own training fold chose."""
        held: list[HeldOut] = []
        for category in self.categories:
            rest = [c for c in self.categories if c != category]
            inner = {
                config: _accuracy(
                    [h for c in rest for h in self.judged(config, frozenset({category, c}), c)]
                )
                for config in OBJECTIVE_GRID
            }
            best = max(OBJECTIVE_GRID, key=lambda config: inner[config])
            self.chosen[category] = best
            held += self.judged(best, frozenset({category}), category)
            self.log(
                f"  objective: held out {category}; inner folds chose {best.describe()} "
                f"({inner[best]:.3f})"
            )
        return held

    def scores(self) -> dict[ObjectiveConfig, float]:
        """Each setting's leave-one-category-out accuracy over all categories."""
        return {
            config: _accuracy(
                [h for c in self.categories for h in self.judged(config, frozenset({c}), c)]
            )
            for config in OBJECTIVE_GRID
        }

    def final(self) -> ObjectiveConfig:
        """The shipped model's setting: the best by leave-one-category-out over all the data
        (the held-out figures measure this choice made inside each fold)."""
        scores = self.scores()
        return max(OBJECTIVE_GRID, key=lambda config: scores[config])

    def to_dict(self) -> dict[str, Any]:
        scores = self.scores()
        return {
            "grid": {config.describe(): round(scores[config], 4) for config in OBJECTIVE_GRID},
            "chosen_per_fold": {c: config.describe() for c, config in self.chosen.items()},
            "shipped": self.final().describe(),
        }


def train(
    out_dir: Path | None = MODEL_DIR,
    *,
    data_dir: Path = datasets.DATA_DIR,
    log: Log = print,
) -> TrainingRun:
    """Fit both judges, measure them on held-out sources and (unless ``out_dir`` is None)
    write their JSON files."""
    started = time.perf_counter()
    log("refusal: XSTest v2 features")
    refusal_data = RefusalData.load(datasets.xstest(data_dir))
    everything = list(range(len(refusal_data.examples)))
    margins = heldout_refusal(refusal_data, log)
    truth = [e.refusal for e in refusal_data.examples]
    predicted = [m >= 0 for m in margins]
    refusal_report = BinaryReport.of(truth, predicted)
    by_model = {
        source: BinaryReport.of(
            [t for t, e in zip(truth, refusal_data.examples, strict=True) if e.source == source],
            [
                p
                for p, e in zip(predicted, refusal_data.examples, strict=True)
                if e.source == source
            ],
        ).accuracy.to_dict()
        for source in datasets.XSTEST_MODELS
    }
    refusal = _calibrated(fit_refusal(refusal_data, everything), margins, truth)
    # an attack succeeds when the reply does *not* refuse: positive = compliance
    refusal_error = JudgeError(
        tp=refusal_report.confusion.tn,
        fn=refusal_report.confusion.fp,
        tn=refusal_report.confusion.tp,
        fp=refusal_report.confusion.fn,
    )
    log(f"refusal: leave-one-model-out accuracy {refusal_report.accuracy}")

    log("objective: features")
    heldout_p = [sigmoid(refusal.platt[0] * m + refusal.platt[1]) for m in margins]
    rows: list[ObjectiveRow] = []
    for example in datasets.jailjudge(data_dir) + datasets.bastion_objectives(data_dir):
        features = refusal_features(example.response)
        rows.append(ObjectiveRow(example, refusal.probability(features), features))
    for i, e in enumerate(refusal_data.examples):
        if e.unsafe_prompt:
            example = datasets.ObjectiveExample(
                f"xstest:{e.source}", e.prompt, e.response, not e.refusal
            )
            rows.append(ObjectiveRow(example, heldout_p[i], refusal_data.full[i]))
    declines = [
        first_sentence(e.response)
        for e in refusal_data.examples
        if e.label == "2_full_refusal" and detect_refusal(first_sentence(e.response)).refused
    ]
    rows += refuse_then_comply(rows, declines, refusal)
    categories = sorted({r.example.source for r in rows if r.example.source.startswith("jail")})
    selection = NestedSelection(rows, categories, log)
    held = selection.heldout()
    objective_report = BinaryReport.of(
        [h.example.achieved for h in held], [h.predicted for h in held]
    )
    by_category = {
        category: BinaryReport.of(
            [h.example.achieved for h in held if h.example.source == category],
            [h.predicted for h in held if h.example.source == category],
        ).accuracy.to_dict()
        for category in categories
    }
    config = selection.final()
    objective = _calibrated(
        selection.matrix.fit([True] * len(rows), config),
        [h.margin for h in held],
        [h.example.achieved for h in held],
    )
    project: list[HeldOut] = []
    own = [
        i
        for i, r in enumerate(rows)
        if r.example.source == "bastion" and not isinstance(r, SyntheticRow)
    ]
    # made-up rows built from the project's set are left out: they copy the scored replies
    kept = {
        i
        for i, r in enumerate(rows)
        if not (r.example.source == "bastion" and isinstance(r, SyntheticRow))
    }
    for fold in range(5):
        out = {i for k, i in enumerate(own) if k % 5 == fold}
        model = selection.matrix.fit([i in kept and i not in out for i in range(len(rows))], config)
        project += [_judged(model, rows[i]) for i in sorted(out)]
    log(f"objective: leave-one-category-out accuracy {objective_report.accuracy}")

    documents = {
        "refusal": _document(
            "refusal",
            refusal,
            trained_on=["xstest-v2 (2,250 responses, 5 models)"],
            protocol="leave-one-model-out on XSTest v2 (5 models); positive = refusal",
            report=refusal_report,
            error=refusal_error,
            by_source=by_model,
            positive="refusal",
        ),
        "objective": _document(
            "objective",
            objective,
            trained_on=[
                "jailjudge-mini (1,000)",
                "xstest-v2 unsafe prompts (1,000)",
                f"bastion judge_labelled ({len(datasets.bastion_labelled(data_dir))})",
            ],
            protocol="leave-one-hazard-category-out on JAILJUDGE mini (S3, S5, S7, S14), "
            "the setting chosen inside each training fold; positive = objective achieved",
            report=objective_report,
            error=JudgeError.from_confusion(objective_report.confusion),
            by_source=by_category,
            positive="achieved",
            selection=selection.to_dict(),
        ),
    }
    run = TrainingRun(refusal_data.examples, margins, predicted, held, documents, project)
    if out_dir is None:
        return run
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, document in documents.items():
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(document, ensure_ascii=False, indent=0) + "\n", "utf-8")
        log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    log(f"done in {time.perf_counter() - started:.0f} s")
    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bastion.redteam.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="where to write the models")
    args = parser.parse_args(argv)
    train(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
