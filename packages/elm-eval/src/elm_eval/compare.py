"""How sure is a difference between two models' task scores? Paired bootstrap over the examples.

Two models scored on the same evaluation examples differ by a number that would move with another
draw of examples. :func:`paired_bootstrap` resamples the examples (the same draw for both models,
so their pairing is kept) and reports the percentile interval of the metric difference, through
``scipy.stats.bootstrap``. The metric is recomputed on every resample, so it works for metrics
that are not means of per-example values (Matthews correlation, F1, correlations); all of
elm-eval's task metrics are vectorised here over resamples (checked against the ``evaluate``
modules by the tests). :func:`mean_over_tasks` combines several tasks' bootstraps (drawn
independently) into the interval of the mean score over tasks.

It measures evaluation-set noise for the models as they are; it says nothing about how much
another fine-tuning or training run would move them (for that, repeat with other seeds).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from elm_eval.errors import ElmEvalError
from elm_eval.metrics import PRIMARY_KEY

_CONFIG = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class BootstrapDifference(BaseModel):
    """``score_a - score_b`` on the same examples, with its paired bootstrap interval."""

    model_config = _CONFIG
    metric: str
    examples: int
    """Evaluation examples per resample (for a mean over tasks: the sum over the tasks)."""
    score_a: float
    score_b: float
    difference: float
    """``score_a - score_b`` on the examples as they are (not a bootstrap mean)."""
    low: float
    high: float
    confidence: float
    resamples: int
    p_value: float
    """Two-sided bootstrap p: twice the share of resampled differences on the far side of 0
    (capped at 1); a rough test, the interval is the main answer."""
    distribution: list[float] = Field(default_factory=list, exclude=True, repr=False)
    """The resampled differences (not serialised), to combine tasks in :func:`mean_over_tasks`."""

    def includes_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


def resampled_metric(
    metric: str, predictions: np.ndarray, labels: np.ndarray, indices: np.ndarray
) -> np.ndarray:
    """Metric ``metric``'s primary score on each resample: ``indices`` is ``[resamples, n]`` (or
    ``[n]``) rows of example indices. Same definitions as elm-eval's metric modules (sklearn's
    accuracy, binary F1 of class 1, multi-class Matthews correlation, Pearson/Spearman mean)."""
    if metric not in PRIMARY_KEY:
        raise ElmEvalError(f"unknown metric {metric!r}; choose one of {sorted(PRIMARY_KEY)}")
    idx = np.atleast_2d(indices)
    p, y = predictions[idx], labels[idx]
    if metric == "accuracy":
        out = (p == y).mean(axis=1)
    elif metric == "f1":
        out = _f1(p, y)
    elif metric == "accuracy_f1":
        out = ((p == y).mean(axis=1) + _f1(p, y)) / 2
    elif metric == "matthews_correlation":
        out = _matthews(p.astype(np.int64), y.astype(np.int64))
    else:  # pearson_spearman
        out = (_pearson(p, y) + _pearson(stats.rankdata(p, axis=1), stats.rankdata(y, axis=1))) / 2
    return out if np.ndim(indices) == 2 else out[0]


def _f1(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    tp = ((p == 1) & (y == 1)).sum(axis=1)
    fp = ((p == 1) & (y != 1)).sum(axis=1)
    fn = ((p != 1) & (y == 1)).sum(axis=1)
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)


def _matthews(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Multi-class Matthews correlation (sklearn's formula) per row, 0 where it is undefined."""
    k = int(max(p.max(), y.max())) + 1
    rows = np.arange(p.shape[0])[:, None]
    confusion = np.bincount((rows * k * k + y * k + p).ravel(), minlength=p.shape[0] * k * k)
    c = confusion.reshape(p.shape[0], k, k).astype(np.float64)  # [resample, true, predicted]
    t_k, p_k = c.sum(axis=2), c.sum(axis=1)
    n, correct = c.sum(axis=(1, 2)), np.trace(c, axis1=1, axis2=2)
    cov = correct * n - (t_k * p_k).sum(axis=1)
    denom = np.sqrt(n * n - (p_k * p_k).sum(axis=1)) * np.sqrt(n * n - (t_k * t_k).sum(axis=1))
    return np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.where(denom > 0, (a * b).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)


def paired_bootstrap(
    metric: str,
    labels: Sequence[float],
    predictions_a: Sequence[float],
    predictions_b: Sequence[float],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapDifference:
    """Percentile interval of ``metric(a) - metric(b)`` over resamples of the examples (both models
    scored on the same resample), from ``scipy.stats.bootstrap``."""
    y = np.asarray(labels)
    a, b = np.asarray(predictions_a), np.asarray(predictions_b)
    if not (len(y) == len(a) == len(b)) or len(y) < 2:
        raise ElmEvalError(
            f"paired bootstrap needs predictions of both models for the same >= 2 examples; got "
            f"{len(a)} and {len(b)} predictions for {len(y)} labels"
        )
    if resamples < 1 or not 0 < confidence < 1:
        raise ElmEvalError(f"resamples must be >= 1 and confidence in (0, 1); got {resamples}, {confidence}")

    def difference(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = np.moveaxis(np.asarray(idx, dtype=np.int64), axis, -1)
        flat = rows.reshape(-1, rows.shape[-1])
        out = resampled_metric(metric, a, y, flat) - resampled_metric(metric, b, y, flat)
        return out.reshape(rows.shape[:-1])

    res = stats.bootstrap(
        (np.arange(len(y)),),
        difference,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    everything = np.arange(len(y))
    score_a = float(resampled_metric(metric, a, y, everything))
    score_b = float(resampled_metric(metric, b, y, everything))
    return BootstrapDifference(
        metric=metric,
        examples=len(y),
        score_a=score_a,
        score_b=score_b,
        difference=score_a - score_b,
        low=float(res.confidence_interval.low),
        high=float(res.confidence_interval.high),
        confidence=confidence,
        resamples=resamples,
        p_value=_two_sided_p(dist),
        distribution=dist.tolist(),
    )


def mean_over_tasks(differences: Sequence[BootstrapDifference]) -> BootstrapDifference:
    """The difference of the mean score over tasks: each task's examples were resampled on their
    own (independent draws), so averaging the tasks' resampled differences draw by draw gives the
    bootstrap distribution of the mean; percentile interval as for one task."""
    if not differences:
        raise ElmEvalError("mean_over_tasks needs at least one task's bootstrap")
    counts = {len(d.distribution) for d in differences}
    confidence = {d.confidence for d in differences}
    if len(counts) != 1 or 0 in counts or len(confidence) != 1:
        raise ElmEvalError(
            "mean_over_tasks needs bootstraps with their distributions, of one size and confidence"
        )
    dist = np.mean([d.distribution for d in differences], axis=0)
    level = confidence.pop()
    low, high = np.percentile(dist, [50 * (1 - level), 50 * (1 + level)])
    metrics = sorted({d.metric for d in differences})
    return BootstrapDifference(
        metric="mean of " + ", ".join(metrics),
        examples=sum(d.examples for d in differences),
        score_a=float(np.mean([d.score_a for d in differences])),
        score_b=float(np.mean([d.score_b for d in differences])),
        difference=float(np.mean([d.difference for d in differences])),
        low=float(low),
        high=float(high),
        confidence=level,
        resamples=counts.pop(),
        p_value=_two_sided_p(dist),
        distribution=dist.tolist(),
    )


def _two_sided_p(dist: np.ndarray) -> float:
    finite = dist[np.isfinite(dist)]
    if not len(finite):
        return float("nan")
    return float(min(1.0, 2 * min((finite <= 0).mean(), (finite >= 0).mean())))
