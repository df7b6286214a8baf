"""Hidden-state MSE and the Pearson (PKD) loss against float64 plain-loop references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from elm_distill import hidden_mse, pearson_hidden_loss, standardize_over_tokens

EPS = 1e-6


def reference_mse(student: np.ndarray, teacher: np.ndarray, mask: np.ndarray) -> float:
    total, count = 0.0, 0
    for b in range(student.shape[0]):
        for t in range(student.shape[1]):
            if mask[b, t]:
                for c in range(student.shape[2]):
                    total += (student[b, t, c] - teacher[b, t, c]) ** 2
                    count += 1
    return total / count


def reference_standardize(x: np.ndarray) -> np.ndarray:
    """Per-channel standardisation of one sample's real tokens x [n, C], population std."""
    return (x - x.mean(axis=0)) / (x.std(axis=0, ddof=0) + EPS)


def reference_pearson(student: np.ndarray, teacher: np.ndarray, mask: np.ndarray) -> float:
    total, count = 0.0, 0
    for b in range(student.shape[0]):
        real = mask[b].astype(bool)
        diff = reference_standardize(student[b, real]) - reference_standardize(teacher[b, real])
        total += float((diff**2).sum())
        count += diff.size
    return total / count


@pytest.fixture
def pair(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    student = torch.randn(3, 7, 5, generator=generator, dtype=torch.float64)
    teacher = 0.5 * student + torch.randn(3, 7, 5, generator=generator, dtype=torch.float64)
    return student, teacher


def test_mse_matches_reference_with_padding(pair, mask) -> None:
    student, teacher = pair
    expected = reference_mse(student.numpy(), teacher.numpy(), mask.numpy())
    assert hidden_mse(student, teacher, mask).item() == pytest.approx(expected, rel=1e-12)
    assert hidden_mse(student.float(), teacher.float(), mask).item() == pytest.approx(expected, rel=1e-5)


def test_mse_without_mask_is_torch_mse(pair) -> None:
    student, teacher = pair
    expected = torch.nn.functional.mse_loss(student, teacher)
    assert hidden_mse(student, teacher).item() == pytest.approx(expected.item(), rel=1e-12)


def test_pearson_matches_reference_with_padding(pair, mask) -> None:
    student, teacher = pair
    expected = reference_pearson(student.numpy(), teacher.numpy(), mask.numpy())
    assert pearson_hidden_loss(student, teacher, mask).item() == pytest.approx(expected, rel=1e-12)
    assert pearson_hidden_loss(student.float(), teacher.float(), mask).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_pearson_is_two_times_one_minus_correlation(pair, mask) -> None:
    """Second route: with population std the loss is the token-weighted mean of 2(1 - r) per channel."""
    student, teacher = pair
    weighted, weights = 0.0, 0
    for b in range(student.shape[0]):
        real = mask[b].bool().numpy()
        if real.sum() < 2:  # one token: both standardise to zeros, the loss there is 0
            weights += int(real.sum()) * student.shape[2]
            continue
        for c in range(student.shape[2]):
            r = stats.pearsonr(student[b, real, c].numpy(), teacher[b, real, c].numpy()).statistic
            weighted += real.sum() * 2 * (1 - r)
            weights += real.sum()
    # eps=0 removes the 1e-6 the definition adds; the identity is then exact.
    value = pearson_hidden_loss(student, teacher, mask, eps=0.0).item()
    assert value == pytest.approx(weighted / weights, rel=1e-9)


def test_pearson_ignores_student_channel_scale_and_shift(pair, mask, generator) -> None:
    student, teacher = pair
    scale = torch.rand(5, generator=generator, dtype=torch.float64) * 10 + 0.1
    shift = torch.randn(5, generator=generator, dtype=torch.float64) * 100
    before = pearson_hidden_loss(student, teacher, mask, eps=0.0)
    after = pearson_hidden_loss(student * scale + shift, teacher, mask, eps=0.0)
    assert after.item() == pytest.approx(before.item(), rel=1e-10)
    # ...but a negative scale flips correlations, which must change the loss.
    flipped = pearson_hidden_loss(-student, teacher, mask, eps=0.0)
    assert flipped.item() > before.item() + 0.5


def test_mse_is_not_scale_invariant(pair, mask) -> None:
    student, teacher = pair
    assert hidden_mse(2 * student, teacher, mask).item() != pytest.approx(
        hidden_mse(student, teacher, mask).item()
    )


@pytest.mark.parametrize("loss", [hidden_mse, pearson_hidden_loss])
def test_identical_inputs_give_zero(loss, pair, mask) -> None:
    student, _ = pair
    assert loss(student, student.clone(), mask).item() == pytest.approx(0.0, abs=1e-12)


def test_standardized_features_have_zero_mean_unit_rms_over_real_tokens(pair, mask) -> None:
    student, _ = pair
    z = standardize_over_tokens(student, mask, eps=0.0)
    for b, length in enumerate(mask.sum(dim=1).tolist()):
        real = z[b, :length]
        assert torch.allclose(real.mean(dim=0), torch.zeros(5, dtype=torch.float64), atol=1e-12)
        if length > 1:
            assert torch.allclose(real.pow(2).mean(dim=0), torch.ones(5, dtype=torch.float64), atol=1e-12)
        assert torch.count_nonzero(z[b, length:]) == 0


def test_pearson_gradient_finite_for_constant_channel(mask) -> None:
    """A one-token row has zero variance; the sqrt there must not produce NaN gradients."""
    student = torch.randn(3, 7, 5, requires_grad=True)
    teacher = torch.randn(3, 7, 5)
    pearson_hidden_loss(student, teacher, mask).backward()
    assert torch.isfinite(student.grad).all()


def test_width_mismatch_names_the_fix() -> None:
    with pytest.raises(ValueError, match="WidthProjection"):
        hidden_mse(torch.randn(2, 3, 4), torch.randn(2, 3, 8))


def test_bad_mask_shape_is_reported() -> None:
    with pytest.raises(ValueError, match=r"mask has shape \(2, 4\)"):
        pearson_hidden_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.ones(2, 4))


def test_all_padding_mask_is_rejected() -> None:
    with pytest.raises(ValueError, match="no real token"):
        hidden_mse(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.zeros(2, 3))
