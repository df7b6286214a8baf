import itertools
import random

import numpy as np
import pytest

from elm_search import kendall_tau, spearman, top_k_overlap


def tau_by_pairs(x, y):
    """Kendall's tau from its definition (no ties): (concordant - discordant) / pairs."""
    c = d = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        s = (x[i] - x[j]) * (y[i] - y[j])
        c += s > 0
        d += s < 0
    return (c - d) / (len(x) * (len(x) - 1) / 2)


def spearman_by_ranks(x, y):
    rx = np.argsort(np.argsort(x)).astype(np.float64)
    ry = np.argsort(np.argsort(y)).astype(np.float64)
    return float(np.corrcoef(rx, ry)[0, 1])


def test_against_definitions():
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(3, 30)
        x = rng.sample(range(1000), n)
        y = [v + rng.gauss(0, 300) for v in x]
        assert kendall_tau(x, y) == pytest.approx(tau_by_pairs(x, y), abs=1e-12)
        assert spearman(x, y) == pytest.approx(spearman_by_ranks(x, y), abs=1e-12)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)


def test_mappings_are_aligned_by_key():
    a = {"x": 1.0, "y": 2.0, "z": 3.0}
    b = {"z": 30.0, "x": 10.0, "y": 20.0}
    assert kendall_tau(a, b) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cover different architectures: 1 only in the first"):
        kendall_tau(a, {"x": 1.0, "y": 2.0, "w": 3.0})
    with pytest.raises(TypeError, match="both scorings must be mappings"):
        spearman(a, [1.0, 2.0, 3.0])


def test_top_k_overlap():
    a = [0.9, 0.8, 0.7, 0.1, 0.2]
    b = [0.1, 0.8, 0.7, 0.9, 0.2]
    assert top_k_overlap(a, b, 2) == 0.5  # top-2 {0,1} vs {3,1}
    assert top_k_overlap(a, b, 3) == pytest.approx(2 / 3)  # {0,1,2} vs {3,1,2}
    assert top_k_overlap(a, b, 5) == 1.0
    assert top_k_overlap(a, b, 2, higher_is_better=False) == 0.5  # lowest two: {3,4} vs {0,4}
    with pytest.raises(ValueError, match="k=6 must be between 1 and the number of architectures"):
        top_k_overlap(a, b, 6)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([1.0, 2.0], [1.0], "different lengths"),
        ([1.0], [1.0], "at least 2 architectures"),
        ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], "the first scoring is constant"),
        ([1.0, float("nan")], [1.0, 2.0], "finite"),
    ],
)
def test_bad_scorings_are_rejected(a, b, message):
    with pytest.raises(ValueError, match=message):
        kendall_tau(a, b)
