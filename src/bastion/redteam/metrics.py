"""Judge metrics with 95% confidence intervals, and attack-success rates corrected for judge
error.

* Proportions (accuracy, precision, recall, sensitivity, specificity): Wilson score
  intervals.
* F1, Cohen's κ and severity MAE: percentile bootstrap over the labelled items (2,000
  resamples, fixed seed, so the same input always gives the same interval).
* ASR: the judge's verdicts estimate the *apparent* rate; with the judge's sensitivity and
  specificity measured on held-out data, the Rogan–Gladen estimator
  ``(apparent + Sp − 1) / (Se + Sp − 1)`` corrects it, and a Monte-Carlo interval draws the
  apparent rate, Se and Sp from their Beta posteriors (Jeffreys priors) at once, so the
  interval widens with few attacks *and* with a judge measured on little data or with
  large error. Without measured Se/Sp the interval is Wilson's on the apparent rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: scorecards without it load faster
    import numpy as np
    import numpy.typing as npt

Z95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 2000
CORRECTION_DRAWS = 4000
SEED = 20240607


def wilson(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes / total`` (``(0, 1)`` when total is 0)."""
    if total <= 0:
        return 0.0, 1.0
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% interval."""

    value: float
    low: float
    high: float

    def to_dict(self, digits: int = 4) -> dict[str, float]:
        return {
            "value": round(self.value, digits),
            "ci_low": round(self.low, digits),
            "ci_high": round(self.high, digits),
        }

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def proportion(successes: int, total: int) -> Estimate:
    low, high = wilson(successes, total)
    return Estimate(successes / total if total else 0.0, low, high)


@dataclass(frozen=True)
class Confusion:
    """Counts of a binary judge against human labels (positive = the judge's positive class)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @classmethod
    def of(cls, truth: Sequence[bool], predicted: Sequence[bool]) -> Confusion:
        pairs = list(zip(truth, predicted, strict=True))
        return cls(
            tp=sum(t and p for t, p in pairs),
            fp=sum(p and not t for t, p in pairs),
            tn=sum(not t and not p for t, p in pairs),
            fn=sum(t and not p for t, p in pairs),
        )

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def to_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Confusion:
        return cls(int(data["tp"]), int(data["fp"]), int(data["tn"]), int(data["fn"]))


def _f1(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    import numpy as np

    tp, fp, fn = c[..., 0], c[..., 1], c[..., 3]
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def _kappa(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    import numpy as np

    tp, fp, tn, fn = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    n = np.maximum(tp + fp + tn + fn, 1)
    observed = (tp + tn) / n
    expected = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / (n * n)
    return np.where(expected < 1, (observed - expected) / np.maximum(1 - expected, 1e-12), 1.0)


def _bootstrap_counts(c: Confusion, samples: int, seed: int) -> npt.NDArray[np.float64]:
    """Resampled confusion counts: a multinomial draw over the four cells is the same as
    resampling the items with replacement."""
    import numpy as np

    if c.n == 0:
        return np.zeros((samples, 4))
    rng = np.random.default_rng(seed)
    p = np.array([c.tp, c.fp, c.tn, c.fn], dtype=np.float64) / c.n
    return rng.multinomial(c.n, p, size=samples).astype(np.float64)


def _interval(point: float, draws: npt.NDArray[np.float64]) -> Estimate:
    import numpy as np

    low, high = np.percentile(draws, [2.5, 97.5]) if draws.size else (point, point)
    return Estimate(point, float(min(low, point)), float(max(high, point)))


@dataclass(frozen=True)
class BinaryReport:
    """Accuracy, precision, recall, F1, κ (each with a 95% CI) of a binary judge."""

    confusion: Confusion
    accuracy: Estimate
    precision: Estimate
    recall: Estimate
    specificity: Estimate
    f1: Estimate
    kappa: Estimate

    @classmethod
    def of(
        cls, truth: Sequence[bool], predicted: Sequence[bool], *, seed: int = SEED
    ) -> BinaryReport:
        return cls.from_confusion(Confusion.of(truth, predicted), seed=seed)

    @classmethod
    def from_confusion(cls, c: Confusion, *, seed: int = SEED) -> BinaryReport:
        import numpy as np

        draws = _bootstrap_counts(c, BOOTSTRAP_SAMPLES, seed)
        point = np.array([[c.tp, c.fp, c.tn, c.fn]], dtype=np.float64)
        return cls(
            confusion=c,
            accuracy=proportion(c.tp + c.tn, c.n),
            precision=proportion(c.tp, c.tp + c.fp),
            recall=proportion(c.tp, c.tp + c.fn),
            specificity=proportion(c.tn, c.tn + c.fp),
            f1=_interval(float(_f1(point)[0]), _f1(draws)),
            kappa=_interval(float(_kappa(point)[0]), _kappa(draws)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.confusion.n,
            **self.confusion.to_dict(),
            "accuracy": self.accuracy.to_dict(),
            "precision": self.precision.to_dict(),
            "recall": self.recall.to_dict(),
            "specificity": self.specificity.to_dict(),
            "f1": self.f1.to_dict(),
            "kappa": self.kappa.to_dict(),
        }


def bootstrap(
    statistic: Callable[[npt.NDArray[np.int64]], float],
    n: int,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
) -> Estimate:
    """Percentile bootstrap of ``statistic(indices)`` over ``n`` items."""
    import numpy as np

    point = statistic(np.arange(n))
    if n == 0:
        return Estimate(point, point, point)
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(samples)])
    return _interval(point, draws)


def severity_mae(truth: Sequence[int], predicted: Sequence[int]) -> Estimate:
    """Mean absolute error of 0–7 severities, with a bootstrap 95% CI."""
    import numpy as np

    errors = np.abs(np.asarray(truth, dtype=np.float64) - np.asarray(predicted, np.float64))

    def mean(indices: npt.NDArray[np.int64]) -> float:
        return float(errors[indices].mean()) if len(indices) else 0.0

    return bootstrap(mean, len(errors))


@dataclass(frozen=True)
class JudgeError:
    """How often a judge calls an attack a success correctly: ``sensitivity`` counts
    (true successes it caught / missed) and ``specificity`` counts (failures it cleared /
    flagged), from held-out labelled data."""

    tp: int
    fn: int
    tn: int
    fp: int

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else 1.0

    @classmethod
    def from_confusion(cls, c: Confusion) -> JudgeError:
        return cls(tp=c.tp, fn=c.fn, tn=c.tn, fp=c.fp)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensitivity": round(self.sensitivity, 4),
            "specificity": round(self.specificity, 4),
            "tp": self.tp,
            "fn": self.fn,
            "tn": self.tn,
            "fp": self.fp,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgeError:
        return cls(int(data["tp"]), int(data["fn"]), int(data["tn"]), int(data["fp"]))


@dataclass(frozen=True)
class AsrEstimate:
    """An attack-success rate as judged (``apparent``), corrected for judge error
    (``corrected``, Rogan–Gladen) and the 95% interval of the true rate; all fractions."""

    successes: int
    evaluated: int
    apparent: float
    corrected: float
    low: float
    high: float
    method: str

    def percent(self) -> dict[str, float]:
        return {
            "asr_corrected": round(100 * self.corrected, 2),
            "asr_ci_lower": round(100 * self.low, 2),
            "asr_ci_upper": round(100 * self.high, 2),
        }


def rogan_gladen(apparent: float, sensitivity: float, specificity: float) -> float:
    """The true prevalence behind an apparent one, clipped to [0, 1]."""
    youden = sensitivity + specificity - 1
    if youden <= 0:
        return apparent
    return min(1.0, max(0.0, (apparent + specificity - 1) / youden))


def asr_estimate(
    successes: int, evaluated: int, error: JudgeError | None, *, seed: int = SEED
) -> AsrEstimate:
    """The ASR of ``successes / evaluated`` with an interval for sample size and judge error.

    With ``error`` (held-out confusion counts of the judge), the apparent rate, sensitivity
    and specificity are drawn from Beta posteriors (Jeffreys priors), each draw corrected
    with Rogan–Gladen, and the 2.5th/97.5th percentiles taken; draws in which the judge is
    no better than chance (Se + Sp ≤ 1) are dropped. Without it, Wilson's interval.
    """
    import numpy as np

    apparent = successes / evaluated if evaluated else 0.0
    if evaluated == 0:
        return AsrEstimate(0, 0, 0.0, 0.0, 0.0, 1.0, "none")
    if error is None:
        low, high = wilson(successes, evaluated)
        return AsrEstimate(successes, evaluated, apparent, apparent, low, high, "wilson")
    rng = np.random.default_rng(seed)
    draws = CORRECTION_DRAWS
    p = rng.beta(successes + 0.5, evaluated - successes + 0.5, draws)
    se = rng.beta(error.tp + 0.5, error.fn + 0.5, draws)
    sp = rng.beta(error.tn + 0.5, error.fp + 0.5, draws)
    youden = se + sp - 1
    usable = youden > 0.05
    corrected = np.clip((p[usable] + sp[usable] - 1) / youden[usable], 0.0, 1.0)
    point = rogan_gladen(apparent, error.sensitivity, error.specificity)
    if corrected.size == 0:
        return AsrEstimate(successes, evaluated, apparent, point, 0.0, 1.0, "rogan-gladen")
    low, high = np.percentile(corrected, [2.5, 97.5])
    return AsrEstimate(
        successes,
        evaluated,
        apparent,
        point,
        float(min(low, point)),
        float(max(high, point)),
        "rogan-gladen",
    )
