"""Ranking fidelity: does a cheap scoring (the supernet) order architectures like an expensive one?

A search only needs the proxy to *rank* architectures correctly, not to predict their scores,
so these compare orderings. Two scorings are either aligned sequences or mappings from an
architecture's stable hash to its score (then the keys must match exactly, so a silently
dropped architecture cannot inflate the agreement).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from scipy import stats

Scoring = Mapping[str, float] | Sequence[float]


def _align(a: Scoring, b: Scoring) -> tuple[list[float], list[float]]:
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError("both scorings must be mappings (hash -> score) or both sequences")
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if a.keys() != b.keys():
            only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
            raise ValueError(
                f"the two scorings cover different architectures: {len(only_a)} only in the first "
                f"{only_a[:3]}, {len(only_b)} only in the second {only_b[:3]}"
            )
        keys = sorted(a)
        xs, ys = [float(a[k]) for k in keys], [float(b[k]) for k in keys]
    else:
        xs, ys = [float(v) for v in a], [float(v) for v in b]
        if len(xs) != len(ys):
            raise ValueError(f"the two scorings have different lengths ({len(xs)} and {len(ys)})")
    if len(xs) < 2:
        raise ValueError(f"rank correlation needs at least 2 architectures, got {len(xs)}")
    if not all(math.isfinite(v) for v in xs + ys):
        raise ValueError("scorings must be finite numbers (found NaN or infinity)")
    for name, vals in (("first", xs), ("second", ys)):
        if len(set(vals)) == 1:
            raise ValueError(
                f"the {name} scoring is constant, so its ranking (and any correlation) is undefined"
            )
    return xs, ys


def kendall_tau(a: Scoring, b: Scoring) -> float:
    """Kendall's tau-b (ties handled), in [-1, 1]."""
    xs, ys = _align(a, b)
    return float(stats.kendalltau(xs, ys).statistic)


def spearman(a: Scoring, b: Scoring) -> float:
    """Spearman's rank correlation, in [-1, 1]."""
    xs, ys = _align(a, b)
    return float(stats.spearmanr(xs, ys).statistic)


def _top_k(values: list[float], k: int, higher_is_better: bool) -> set[int]:
    sign = -1.0 if higher_is_better else 1.0
    # ties broken by position, so the result is deterministic
    return set(sorted(range(len(values)), key=lambda i: (sign * values[i], i))[:k])


def top_k_overlap(a: Scoring, b: Scoring, k: int, higher_is_better: bool = True) -> float:
    """Fraction of the k best under ``a`` that are also among the k best under ``b``.

    This is what matters when the proxy only has to shortlist candidates for retraining.
    """
    xs, ys = _align(a, b)
    if not 1 <= k <= len(xs):
        raise ValueError(f"k={k} must be between 1 and the number of architectures ({len(xs)})")
    return len(_top_k(xs, k, higher_is_better) & _top_k(ys, k, higher_is_better)) / k
