"""Sparse logistic regression: fitted with numpy, scored with plain Python.

The trained judges are linear models over the named features of
:mod:`bastion.redteam.features`. Fitting needs only numpy (L-BFGS on a sparse design matrix,
so training is reproducible without scikit-learn); scoring a reply is a dictionary dot
product, so judging needs no numerical library at all. A model is stored as JSON: its
weights by feature name, the bias, the IDF table of its n-gram blocks and a Platt calibration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from bastion.redteam.features import tfidf

FloatArray = npt.NDArray[np.float64]


def sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    z = math.exp(value)
    return z / (1.0 + z)


@dataclass(frozen=True)
class Design:
    """A sparse design matrix in coordinate form over a fixed feature vocabulary."""

    names: tuple[str, ...]
    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    values: FloatArray
    n: int

    @classmethod
    def of(cls, samples: Sequence[Mapping[str, float]]) -> Design:
        names = tuple(sorted({name for sample in samples for name in sample}))
        index = {name: i for i, name in enumerate(names)}
        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        for r, sample in enumerate(samples):
            for name, value in sample.items():
                if value:
                    rows.append(r)
                    cols.append(index[name])
                    values.append(value)
        return cls(
            names,
            np.asarray(rows, dtype=np.int64),
            np.asarray(cols, dtype=np.int64),
            np.asarray(values, dtype=np.float64),
            len(samples),
        )

    def dot(self, w: FloatArray) -> FloatArray:
        return np.bincount(self.rows, self.values * w[self.cols], minlength=self.n).astype(
            np.float64
        )

    def tdot(self, r: FloatArray) -> FloatArray:
        counts = np.bincount(self.cols, self.values * r[self.rows], minlength=len(self.names))
        return counts.astype(np.float64)


def fit_logistic(
    samples: Sequence[Mapping[str, float]],
    labels: Sequence[bool | int | float],
    *,
    l2: float = 1e-3,
    sample_weight: Sequence[float] | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
) -> tuple[dict[str, float], float]:
    """Weights by feature name and a bias minimising weighted mean log-loss + ``l2``/2·‖w‖².

    L-BFGS with a backtracking line search; deterministic for the same input.
    """
    return fit_design(
        Design.of(samples),
        labels,
        l2=l2,
        sample_weight=sample_weight,
        max_iter=max_iter,
        tol=tol,
    )


def fit_design(
    design: Design,
    labels: Sequence[bool | int | float] | FloatArray,
    *,
    l2: float = 1e-3,
    sample_weight: Sequence[float] | FloatArray | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
) -> tuple[dict[str, float], float]:
    """:func:`fit_logistic` on a design matrix that is already built."""
    y = np.asarray(labels, dtype=np.float64)
    sw = np.ones(design.n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    sw = sw / sw.sum()
    dim = len(design.names)

    def loss_grad(theta: FloatArray) -> tuple[float, FloatArray]:
        w, b = theta[:dim], theta[dim]
        z = design.dot(w) + b
        # log(1 + e^z) - y z, computed stably
        loss = float(np.sum(sw * (np.logaddexp(0.0, z) - y * z))) + 0.5 * l2 * float(w @ w)
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        r = sw * (p - y)
        grad = np.empty(dim + 1)
        grad[:dim] = design.tdot(r) + l2 * w
        grad[dim] = r.sum()
        return loss, grad

    theta = lbfgs(loss_grad, np.zeros(dim + 1), max_iter=max_iter, tol=tol)
    weights = {name: float(theta[i]) for i, name in enumerate(design.names) if theta[i] != 0.0}
    return weights, float(theta[dim])


def lbfgs(
    fun: Any, x0: FloatArray, *, memory: int = 10, max_iter: int = 500, tol: float = 1e-7
) -> FloatArray:
    """Minimise a smooth convex ``fun(x) -> (value, gradient)`` with L-BFGS."""
    x = x0.copy()
    value, grad = fun(x)
    s_list: list[FloatArray] = []
    y_list: list[FloatArray] = []
    for _ in range(max_iter):
        if float(np.max(np.abs(grad))) < tol:
            break
        q = grad.copy()
        alphas = []
        for s, yv in zip(reversed(s_list), reversed(y_list), strict=True):
            rho = 1.0 / float(yv @ s)
            alpha = rho * float(s @ q)
            alphas.append((rho, alpha))
            q -= alpha * yv
        if s_list:
            q *= float(s_list[-1] @ y_list[-1]) / float(y_list[-1] @ y_list[-1])
        for (rho, alpha), s, yv in zip(reversed(alphas), s_list, y_list, strict=True):
            beta = rho * float(yv @ q)
            q += (alpha - beta) * s
        direction = -q
        slope = float(grad @ direction)
        if slope >= 0:  # not a descent direction: restart from steepest descent
            s_list.clear()
            y_list.clear()
            direction, slope = -grad, -float(grad @ grad)
        step = 1.0
        while True:
            candidate = x + step * direction
            new_value, new_grad = fun(candidate)
            if new_value <= value + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s_vec, y_vec = candidate - x, new_grad - grad
        if float(s_vec @ y_vec) > 1e-12:
            s_list.append(s_vec)
            y_list.append(y_vec)
            if len(s_list) > memory:
                s_list.pop(0)
                y_list.pop(0)
        improvement = value - new_value
        x, value, grad = candidate, new_value, new_grad
        if 0 <= improvement < tol * max(1.0, abs(value)):
            break
    return x


def fit_platt(
    scores: Sequence[float], labels: Sequence[bool | int], *, intercept: bool = True
) -> tuple[float, float]:
    """``(a, b)`` so that ``sigmoid(a * score + b)`` is a calibrated probability (Platt
    scaling with the usual smoothed targets, which keeps ``a`` finite on separable data).
    Without ``intercept``, ``b`` is 0 (temperature scaling: the decision at score 0 stays)."""
    y = np.asarray(labels, dtype=np.float64)
    positives, negatives = float(y.sum()), float(len(y) - y.sum())
    target = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    s = np.asarray(scores, dtype=np.float64)

    def loss_grad(theta: FloatArray) -> tuple[float, FloatArray]:
        z = theta[0] * s + theta[1]
        loss = float(np.mean(np.logaddexp(0.0, z) - target * z))
        r = (0.5 * (1.0 + np.tanh(0.5 * z)) - target) / len(s)
        return loss, np.array([float(r @ s), float(r.sum()) if intercept else 0.0])

    a, b = lbfgs(loss_grad, np.array([1.0, 0.0]), max_iter=200, tol=1e-9)
    return float(a), float(b)


@dataclass(frozen=True)
class LinearModel:
    """A fitted model: ``p = sigmoid(a · (w·tfidf(x) + bias) + b)``, positive when
    ``p ≥ threshold``."""

    weights: Mapping[str, float]
    bias: float
    idf: Mapping[str, float] = field(default_factory=dict)
    platt: tuple[float, float] = (1.0, 0.0)
    threshold: float = 0.5

    def transform(self, features: Mapping[str, float]) -> dict[str, float]:
        return tfidf(dict(features), dict(self.idf))

    def margin(self, features: Mapping[str, float]) -> float:
        """The raw linear score of already-extracted (untransformed) features."""
        x = self.transform(features)
        weights = self.weights
        return self.bias + sum(v * weights.get(k, 0.0) for k, v in x.items())

    def probability(self, features: Mapping[str, float]) -> float:
        a, b = self.platt
        return sigmoid(a * self.margin(features) + b)

    def contributions(self, features: Mapping[str, float]) -> list[tuple[str, float]]:
        """Each feature's share of the score, largest magnitude first."""
        x = self.transform(features)
        parts = [(k, v * self.weights[k]) for k, v in x.items() if k in self.weights]
        return sorted(parts, key=lambda kv: -abs(kv[1]))

    def to_json(self) -> dict[str, Any]:
        return {
            "bias": round(self.bias, 6),
            "platt": [round(self.platt[0], 6), round(self.platt[1], 6)],
            "threshold": round(self.threshold, 6),
            "weights": {k: round(v, 5) for k, v in sorted(self.weights.items()) if abs(v) >= 1e-5},
            "idf": {k: round(v, 4) for k, v in sorted(self.idf.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LinearModel:
        platt = data.get("platt") or (1.0, 0.0)
        return cls(
            weights={str(k): float(v) for k, v in data["weights"].items()},
            bias=float(data["bias"]),
            idf={str(k): float(v) for k, v in (data.get("idf") or {}).items()},
            platt=(float(platt[0]), float(platt[1])),
            threshold=float(data.get("threshold", 0.5)),
        )
