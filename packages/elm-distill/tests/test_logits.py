"""Soft cross-entropy, KL with temperature and logits MSE against float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import rel_entr, softmax

from elm_distill import kl_div_loss, logits_mse, soft_cross_entropy


def reference_rows(student: np.ndarray, teacher: np.ndarray, mask: np.ndarray | None):
    """Real rows of [N, C] or [B, T, V] logits as a list of (student_row, teacher_row)."""
    classes = student.shape[-1]
    s, t = student.reshape(-1, classes), teacher.reshape(-1, classes)
    keep = np.ones(len(s), bool) if mask is None else mask.reshape(-1).astype(bool)
    return [(s[i], t[i]) for i in range(len(s)) if keep[i]]


def reference_soft_ce(student, teacher, mask, temperature) -> float:
    values = []
    for s, t in reference_rows(student, teacher, mask):
        p_t = softmax(t / temperature)
        log_p_s = np.log(softmax(s / temperature))
        values.append(-sum(p_t[c] * log_p_s[c] for c in range(len(s))))
    return float(np.mean(values))


def reference_kl(student, teacher, mask, temperature) -> float:
    rows = reference_rows(student, teacher, mask)
    return float(
        np.mean([rel_entr(softmax(t / temperature), softmax(s / temperature)).sum() for s, t in rows])
    )


@pytest.fixture
def token_logits(generator) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        3 * torch.randn(3, 7, 11, generator=generator, dtype=torch.float64),
        3 * torch.randn(3, 7, 11, generator=generator, dtype=torch.float64),
    )


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_soft_ce_matches_reference(token_logits, mask, temperature) -> None:
    s, t = token_logits
    expected = reference_soft_ce(s.numpy(), t.numpy(), mask.numpy(), temperature)
    assert soft_cross_entropy(s, t, mask, temperature=temperature).item() == pytest.approx(
        expected, rel=1e-12
    )
    scaled = soft_cross_entropy(s, t, mask, temperature=temperature, t_squared=True).item()
    assert scaled == pytest.approx(expected * temperature**2, rel=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kl_matches_reference_with_and_without_t_squared(token_logits, mask, temperature) -> None:
    s, t = token_logits
    expected = reference_kl(s.numpy(), t.numpy(), mask.numpy(), temperature)
    plain = kl_div_loss(s, t, mask, temperature=temperature, t_squared=False).item()
    assert plain == pytest.approx(expected, rel=1e-10)
    assert kl_div_loss(s, t, mask, temperature=temperature).item() == pytest.approx(
        expected * temperature**2, rel=1e-10
    )
    assert kl_div_loss(s.float(), t.float(), mask, temperature=temperature, t_squared=False).item() == (
        pytest.approx(expected, rel=1e-4)
    )


def test_sequence_logits_without_mask(generator) -> None:
    s = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    t = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    assert kl_div_loss(s, t, t_squared=False).item() == pytest.approx(
        reference_kl(s.numpy(), t.numpy(), None, 1.0), rel=1e-10
    )
    # Second route: torch's own KL with batchmean reduction.
    torch_kl = torch.nn.functional.kl_div(
        s.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="batchmean"
    )
    assert kl_div_loss(s, t).item() == pytest.approx(torch_kl.item(), rel=1e-12)


def test_soft_ce_and_kl_differ_by_teacher_entropy(token_logits, mask) -> None:
    s, t = token_logits
    p_t = t.softmax(-1)
    entropy = -(p_t * p_t.log()).sum(-1)[mask.bool()].mean()
    difference = soft_cross_entropy(s, t, mask) - kl_div_loss(s, t, mask, t_squared=False)
    assert difference.item() == pytest.approx(entropy.item(), rel=1e-12)


def test_kl_is_zero_for_identical_logits_and_for_row_shifts(token_logits, mask) -> None:
    s, _ = token_logits
    shift = torch.randn(3, 7, 1, dtype=torch.float64)
    assert kl_div_loss(s, s.clone(), mask).item() == pytest.approx(0.0, abs=1e-12)
    assert kl_div_loss(s + shift, s, mask).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(6,), (6, 2), (3, 7, 2)])
def test_logits_mse_matches_reference(shape, generator) -> None:
    s = torch.randn(shape, generator=generator, dtype=torch.float64)
    t = torch.randn(shape, generator=generator, dtype=torch.float64)
    leading = shape if len(shape) == 1 else shape[:-1]
    mask = (torch.rand(leading, generator=generator) > 0.3).long()
    mask.view(-1)[0] = 1
    keep = mask.numpy().astype(bool)
    diff = (s.numpy() - t.numpy())[keep]
    assert logits_mse(s, t, mask).item() == pytest.approx(float((diff**2).mean()), rel=1e-12)
    assert logits_mse(s, t).item() == pytest.approx(float(((s - t) ** 2).mean()), rel=1e-12)


def test_nonpositive_temperature_rejected(token_logits) -> None:
    s, t = token_logits
    with pytest.raises(ValueError, match="temperature must be > 0"):
        kl_div_loss(s, t, temperature=0.0)


def test_class_count_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="same classes"):
        soft_cross_entropy(torch.randn(4, 3), torch.randn(4, 5))
