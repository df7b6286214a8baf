"""The paired bootstrap of a score difference, against independent computations."""

import math

import numpy as np
import pytest

import elm_eval
from elm_eval import ElmEvalError, mean_over_tasks, paired_bootstrap, resampled_metric


def _pair(n: int, seed: int, right_a: float, right_b: float, classes: int = 2):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    a = np.where(rng.random(n) < right_a, y, (y + 1) % classes)
    b = np.where(rng.random(n) < right_b, y, (y + 1) % classes)
    return y, a, b


@pytest.mark.parametrize("metric", ["accuracy", "f1", "accuracy_f1", "matthews_correlation"])
def test_resampled_metric_equals_the_metric_modules(metric):
    y, a, _ = _pair(200, 1, 0.7, 0.5, classes=3 if metric == "matthews_correlation" else 2)
    idx = np.random.default_rng(2).integers(0, len(y), (4, len(y)))
    fast = resampled_metric(metric, a, y, idx)
    slow = [elm_eval.compute_metric(metric, a[i].tolist(), y[i].tolist())[0] for i in idx]
    assert fast == pytest.approx(slow, abs=1e-12)


def test_resampled_pearson_spearman_equals_the_metric_module():
    rng = np.random.default_rng(3)
    y = rng.normal(size=150)
    a = y + rng.normal(size=150)
    idx = rng.integers(0, 150, (3, 150))
    slow = [elm_eval.compute_metric("pearson_spearman", a[i].tolist(), y[i].tolist())[0] for i in idx]
    assert resampled_metric("pearson_spearman", a, y, idx) == pytest.approx(slow, abs=1e-9)


def test_accuracy_interval_matches_an_independent_bootstrap_and_the_normal_approximation():
    y, a, b = _pair(800, 4, 0.8, 0.74)
    got = paired_bootstrap("accuracy", y.tolist(), a.tolist(), b.tolist(), resamples=4000, seed=0)
    d = (a == y).astype(float) - (b == y).astype(float)  # accuracy difference = mean of d
    assert got.difference == pytest.approx(d.mean(), abs=1e-12)
    assert got.score_a == pytest.approx((a == y).mean()) and got.score_b == pytest.approx((b == y).mean())
    # an independent percentile bootstrap of the mean of d (another generator, numpy only)
    rng = np.random.default_rng(123)
    means = d[rng.integers(0, len(d), (4000, len(d)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    se = d.std(ddof=1) / math.sqrt(len(d))
    assert got.low == pytest.approx(low, abs=0.25 * se) and got.high == pytest.approx(high, abs=0.25 * se)
    # and the textbook interval for a mean: d-bar +- 1.96 se
    assert got.low == pytest.approx(d.mean() - 1.96 * se, abs=0.3 * se)
    assert got.high == pytest.approx(d.mean() + 1.96 * se, abs=0.3 * se)
    assert not got.includes_zero() and got.p_value < 0.05
    assert len(got.distribution) == 4000 and "distribution" not in got.model_dump()


def test_equal_models_give_a_degenerate_interval_at_zero_and_p_one():
    y, a, _ = _pair(100, 5, 0.7, 0.7)
    got = paired_bootstrap("matthews_correlation", y.tolist(), a.tolist(), a.tolist(), resamples=200)
    assert got.difference == 0 and got.low == 0 and got.high == 0 and got.p_value == 1.0


def test_same_seed_same_interval_and_wider_with_fewer_examples():
    y, a, b = _pair(1000, 6, 0.8, 0.75)
    first = paired_bootstrap("accuracy", y, a, b, resamples=500, seed=7)
    assert paired_bootstrap("accuracy", y, a, b, resamples=500, seed=7) == first
    small = paired_bootstrap("accuracy", y[:250], a[:250], b[:250], resamples=500, seed=7)
    assert small.high - small.low > 1.5 * (first.high - first.low)  # about 2x (sqrt of 4)


def test_mean_over_tasks_averages_independent_draws():
    y1, a1, b1 = _pair(600, 8, 0.8, 0.7)
    y2, a2, b2 = _pair(600, 9, 0.6, 0.65)
    t1 = paired_bootstrap("accuracy", y1, a1, b1, resamples=3000, seed=1)
    t2 = paired_bootstrap("matthews_correlation", y2, a2, b2, resamples=3000, seed=2)
    both = mean_over_tasks([t1, t2])
    assert both.difference == pytest.approx((t1.difference + t2.difference) / 2)
    assert both.examples == 1200 and both.metric == "mean of accuracy, matthews_correlation"
    # independent tasks: the variance of the mean is the mean of the variances / 2
    sd = math.sqrt((np.var(t1.distribution) + np.var(t2.distribution)) / 4)
    assert (both.high - both.low) == pytest.approx(2 * 1.96 * sd, rel=0.1)


def test_bad_inputs_are_elm_eval_errors():
    with pytest.raises(ElmEvalError, match="same >= 2 examples"):
        paired_bootstrap("accuracy", [0, 1, 1], [0, 1], [0, 1, 1])
    with pytest.raises(ElmEvalError, match="unknown metric"):
        resampled_metric("bleu", np.zeros(3), np.zeros(3), np.arange(3))
    with pytest.raises(ElmEvalError, match="at least one"):
        mean_over_tasks([])
