"""DIST against a float64 reference, and the transformations it is meant to ignore."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax

from elm_distill import dist_loss, inter_class_relation, intra_class_relation


def reference_dist(student, teacher, mask, temperature=1.0, beta=1.0, gamma=1.0) -> float:
    classes = student.shape[-1]
    keep = mask.reshape(-1).astype(bool) if mask is not None else slice(None)
    p_s = softmax(student.reshape(-1, classes)[keep] / temperature, axis=1)
    p_t = softmax(teacher.reshape(-1, classes)[keep] / temperature, axis=1)
    inter = 1 - np.mean([np.corrcoef(p_s[i], p_t[i])[0, 1] for i in range(len(p_s))])
    intra = 1 - np.mean([np.corrcoef(p_s[:, c], p_t[:, c])[0, 1] for c in range(classes)])
    return temperature**2 * (beta * inter + gamma * intra)


@pytest.fixture
def logits(generator) -> tuple[torch.Tensor, torch.Tensor]:
    teacher = 2 * torch.randn(3, 7, 6, generator=generator, dtype=torch.float64)
    student = teacher + 1.5 * torch.randn(3, 7, 6, generator=generator, dtype=torch.float64)
    return student, teacher


@pytest.mark.parametrize(("temperature", "beta", "gamma"), [(1.0, 1.0, 1.0), (2.0, 0.5, 2.0)])
def test_matches_reference_with_padding(logits, mask, temperature, beta, gamma) -> None:
    s, t = logits
    expected = reference_dist(s.numpy(), t.numpy(), mask.numpy(), temperature, beta, gamma)
    value = dist_loss(s, t, mask, temperature=temperature, beta=beta, gamma=gamma).item()
    assert value == pytest.approx(expected, rel=1e-6)  # the 1e-8 eps in each correlation
    assert dist_loss(s.float(), t.float(), mask, temperature, beta, gamma).item() == pytest.approx(
        expected, rel=1e-4
    )


def test_sequence_logits(generator) -> None:
    s = torch.randn(8, 4, generator=generator, dtype=torch.float64)
    t = torch.randn(8, 4, generator=generator, dtype=torch.float64)
    assert dist_loss(s, t).item() == pytest.approx(reference_dist(s.numpy(), t.numpy(), None), rel=1e-6)


def test_identical_logits_give_zero(logits, mask) -> None:
    _, t = logits
    assert dist_loss(t, t.clone(), mask).item() == pytest.approx(0.0, abs=1e-7)


def test_ignores_per_row_logit_shift(logits, mask, generator) -> None:
    s, t = logits
    shift = 50 * torch.randn(3, 7, 1, generator=generator, dtype=torch.float64)
    assert dist_loss(s + shift, t - shift, mask).item() == pytest.approx(
        dist_loss(s, t, mask).item(), rel=1e-10
    )


def test_ignores_consistent_permutations(logits, generator) -> None:
    s, t = logits[0][0], logits[1][0]  # [7, 6]
    rows = torch.randperm(7, generator=generator)
    classes = torch.randperm(6, generator=generator)
    permuted = dist_loss(s[rows][:, classes], t[rows][:, classes])
    assert permuted.item() == pytest.approx(dist_loss(s, t).item(), rel=1e-10)


def test_symmetric_in_student_and_teacher(logits, mask) -> None:
    s, t = logits
    assert dist_loss(s, t, mask).item() == pytest.approx(dist_loss(t, s, mask).item(), rel=1e-12)


def test_inter_relation_ignores_positive_affine_maps_of_student_rows(generator) -> None:
    p_s = torch.rand(5, 6, generator=generator, dtype=torch.float64)
    p_t = torch.rand(5, 6, generator=generator, dtype=torch.float64)
    scale = torch.rand(5, 1, generator=generator, dtype=torch.float64) + 0.5
    offset = torch.randn(5, 1, generator=generator, dtype=torch.float64)
    before = inter_class_relation(p_s, p_t).item()
    assert inter_class_relation(scale * p_s + offset, p_t).item() == pytest.approx(before, rel=1e-7)
    # a per-column change is not a per-row affine map: inter must notice it
    column_scale = torch.linspace(0.2, 3.0, 6, dtype=torch.float64)
    assert inter_class_relation(p_s * column_scale, p_t).item() != pytest.approx(before, rel=1e-3)


def test_intra_relation_ignores_positive_affine_maps_of_student_columns(generator) -> None:
    p_s = torch.rand(5, 6, generator=generator, dtype=torch.float64)
    p_t = torch.rand(5, 6, generator=generator, dtype=torch.float64)
    scale = torch.rand(1, 6, generator=generator, dtype=torch.float64) + 0.5
    offset = torch.randn(1, 6, generator=generator, dtype=torch.float64)
    before = intra_class_relation(p_s, p_t).item()
    assert intra_class_relation(scale * p_s + offset, p_t).item() == pytest.approx(before, rel=1e-7)


def test_temperature_scales_by_t_squared_at_fixed_probabilities(logits, mask) -> None:
    """Logits scaled by T at temperature T give the same probabilities, so only the T² factor remains."""
    s, t = logits
    assert dist_loss(3 * s, 3 * t, mask, temperature=3.0).item() == pytest.approx(
        9 * dist_loss(s, t, mask).item(), rel=1e-10
    )
