"""MiniLM-v2 relation loss against a plain-loop float64 reference over real tokens only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import rel_entr, softmax

from elm_distill import QKV, minilm_v2_loss, self_relation_loss


def reference_relation(student: np.ndarray, teacher: np.ndarray, mask: np.ndarray, heads: int) -> float:
    """KL per (sample, head, real query) of softmax(x xᵀ/sqrt(d)) over the real keys only."""
    values = []
    for b in range(student.shape[0]):
        real = np.flatnonzero(mask[b])
        for h in range(heads):
            relations = []
            for x in (student[b, real], teacher[b, real]):
                d = x.shape[1] // heads
                part = x[:, h * d : (h + 1) * d]
                relations.append(softmax(part @ part.T / np.sqrt(d), axis=1))
            rel_s, rel_t = relations
            values.extend(rel_entr(rel_t[q], rel_s[q]).sum() for q in range(len(real)))
    return float(np.mean(values))


@pytest.fixture
def vectors(generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Student 8 wide, teacher 12 wide: relations work across widths."""
    return (
        torch.randn(3, 7, 8, generator=generator, dtype=torch.float64),
        torch.randn(3, 7, 12, generator=generator, dtype=torch.float64),
    )


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_relation_matches_reference_across_widths(vectors, mask, heads) -> None:
    s, t = vectors
    expected = reference_relation(s.numpy(), t.numpy(), mask.numpy(), heads)
    assert self_relation_loss(s, t, mask, num_relation_heads=heads).item() == pytest.approx(
        expected, rel=1e-10
    )
    assert self_relation_loss(s.float(), t.float(), mask, heads).item() == pytest.approx(expected, rel=1e-4)


def test_v2_loss_sums_the_three_relations(vectors, mask, generator) -> None:
    s, t = vectors
    student = QKV(s, 2 * s, torch.randn(3, 7, 8, generator=generator, dtype=torch.float64))
    teacher = QKV(t, -t, torch.randn(3, 7, 12, generator=generator, dtype=torch.float64))
    expected = sum(
        reference_relation(a.numpy(), b.numpy(), mask.numpy(), 4)
        for a, b in zip(student, teacher, strict=True)
    )
    assert minilm_v2_loss(student, teacher, mask, num_relation_heads=4).item() == pytest.approx(
        expected, rel=1e-10
    )


def test_zero_for_identical_vectors(vectors, mask) -> None:
    s, _ = vectors
    assert self_relation_loss(s, s.clone(), mask, 2).item() == pytest.approx(0.0, abs=1e-12)


def test_relations_ignore_rotations_of_the_vectors(vectors, mask) -> None:
    """x xᵀ is unchanged by an orthogonal map of x (one relation head sees the whole width)."""
    s, t = vectors
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    before = self_relation_loss(s, t, mask, 1).item()
    assert self_relation_loss(s @ rotation, t, mask, 1).item() == pytest.approx(before, rel=1e-10)


def test_heads_must_divide_both_widths(vectors) -> None:
    s, t = vectors
    with pytest.raises(ValueError, match="does not divide the student width 8"):
        self_relation_loss(s, t, num_relation_heads=3)
    with pytest.raises(ValueError, match="does not divide the teacher width 12"):
        self_relation_loss(s, t, num_relation_heads=8)


def test_token_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="same tokens"):
        self_relation_loss(torch.randn(2, 5, 4), torch.randn(2, 6, 4), num_relation_heads=2)
