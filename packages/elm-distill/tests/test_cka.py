"""Linear CKA (biased and debiased) against independent references, and head-pruning helpers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from elm_distill import head_cka_matrix, linear_cka, per_head_features, redundant_heads


def reference_biased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Feature-space form (Kornblith et al., eq. 5): ||Y_cᵀX_c||²_F / (||X_cᵀX_c||_F ||Y_cᵀY_c||_F)."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def reference_unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741 - the paper's name
    """Song et al. (2012) as U-statistics over distinct index tuples, by brute force."""
    n = len(k)
    pairs = [(i, j) for i, j in itertools.permutations(range(n), 2)]
    triples = list(itertools.permutations(range(n), 3))
    quads = list(itertools.permutations(range(n), 4))
    first = np.mean([k[i, j] * l[i, j] for i, j in pairs])
    second = np.mean([k[i, j] * l[q, r] for i, j, q, r in quads])
    third = np.mean([k[i, j] * l[i, q] for i, j, q in triples])
    return first + second - 2 * third


def reference_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    k, l = x @ x.T, y @ y.T  # noqa: E741
    return reference_unbiased_hsic(k, l) / np.sqrt(
        reference_unbiased_hsic(k, k) * reference_unbiased_hsic(l, l)
    )


@pytest.fixture
def representations(generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    y = x @ torch.randn(5, 3, generator=generator, dtype=torch.float64) + torch.randn(
        7, 3, generator=generator, dtype=torch.float64
    )
    return x, y


def test_biased_matches_feature_space_reference(representations) -> None:
    x, y = representations
    assert linear_cka(x, y).item() == pytest.approx(reference_biased_cka(x.numpy(), y.numpy()), rel=1e-12)
    assert linear_cka(x.float(), y.float()).item() == pytest.approx(
        reference_biased_cka(x.numpy(), y.numpy()), rel=1e-5
    )


def test_debiased_matches_u_statistic_reference(representations) -> None:
    x, y = representations
    expected = reference_debiased_cka(x.numpy(), y.numpy())
    assert linear_cka(x, y, debiased=True).item() == pytest.approx(expected, rel=1e-10)


def test_invariances(representations) -> None:
    x, y = representations
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    assert linear_cka(x, x).item() == pytest.approx(1.0, rel=1e-12)
    assert linear_cka(x @ rotation * 3.0, y).item() == pytest.approx(linear_cka(x, y).item(), rel=1e-10)
    assert linear_cka(x, y).item() == pytest.approx(linear_cka(y, x).item(), rel=1e-12)


def test_debiasing_removes_the_inflation_for_unrelated_wide_features(generator) -> None:
    x = torch.randn(40, 500, generator=generator, dtype=torch.float64)
    y = torch.randn(40, 500, generator=generator, dtype=torch.float64)
    assert linear_cka(x, y).item() > 0.8
    assert abs(linear_cka(x, y, debiased=True).item()) < 0.15


@pytest.mark.parametrize("debiased", [False, True])
def test_head_matrix_equals_pairwise_cka(generator, debiased) -> None:
    features = torch.randn(4, 6, 5, generator=generator, dtype=torch.float64)
    matrix = head_cka_matrix(features, debiased=debiased)
    for i, j in itertools.product(range(4), repeat=2):
        assert matrix[i, j].item() == pytest.approx(
            linear_cka(features[i], features[j], debiased).item(), rel=1e-10
        )


def test_per_head_features_splits_heads_and_zeroes_padding(mask, generator) -> None:
    context = torch.randn(3, 7, 6, generator=generator)
    per_head = per_head_features(context, num_heads=2, mask=mask)
    assert per_head.shape == (2, 3, 21)
    for h in range(2):
        for b, length in enumerate(mask.sum(1).tolist()):
            expected = context[b, :, 3 * h : 3 * (h + 1)].clone()
            expected[length:] = 0
            assert torch.equal(per_head[h, b], expected.reshape(-1))


def test_redundant_heads_walks_in_order_without_duplicates() -> None:
    cka = torch.eye(5, dtype=torch.float64)
    for i, j in [(0, 2), (1, 2), (2, 4), (1, 3)]:
        cka[i, j] = cka[j, i] = 0.95
    # 0 removes 2; 1 removes 2 (again) and 3; 2 is removed so its similarity to 4 does not count.
    assert redundant_heads(cka, threshold=0.9) == [2, 3]
    assert redundant_heads(cka, threshold=0.99) == []


def test_too_few_examples_for_debiased() -> None:
    with pytest.raises(ValueError, match="at least 4 examples"):
        linear_cka(torch.randn(3, 2), torch.randn(3, 2), debiased=True)


def test_example_count_mismatch() -> None:
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(torch.randn(5, 2), torch.randn(6, 2))
