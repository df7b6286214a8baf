"""Attention-map KL against a plain-loop reference, on maps shaped like a padded HF model's."""

from __future__ import annotations

import pytest
import torch
from scipy.special import rel_entr

from elm_distill import attention_map_kl


def attention_maps(mask: torch.Tensor, heads: int, generator: torch.Generator) -> torch.Tensor:
    """Random [B, H, T, T] probabilities with padded keys at exactly 0, as eager HF attention gives."""
    batch, tokens = mask.shape
    scores = 2 * torch.randn(batch, heads, tokens, tokens, generator=generator, dtype=torch.float64)
    scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(torch.float64).min)
    return scores.softmax(dim=-1)


def reference(student, teacher, mask) -> float:
    values = []
    for b in range(student.shape[0]):
        real = mask[b].nonzero().flatten().tolist()
        for h in range(student.shape[1]):
            for q in real:
                values.append(rel_entr(teacher[b, h, q, real].numpy(), student[b, h, q, real].numpy()).sum())
    return sum(values) / len(values)


def test_matches_reference_with_padding(mask, generator) -> None:
    s, t = attention_maps(mask, 2, generator), attention_maps(mask, 2, generator)
    assert attention_map_kl(s, t, mask).item() == pytest.approx(reference(s, t, mask), rel=1e-10)
    assert attention_map_kl(s.float(), t.float(), mask).item() == pytest.approx(
        reference(s, t, mask), rel=1e-4
    )


def test_zero_for_identical_maps(mask, generator) -> None:
    t = attention_maps(mask, 2, generator)
    assert attention_map_kl(t.clone(), t, mask).item() == pytest.approx(0.0, abs=1e-12)


def test_padded_queries_and_keys_do_not_count(mask, generator) -> None:
    s, t = attention_maps(mask, 2, generator), attention_maps(mask, 2, generator)
    before = attention_map_kl(s, t, mask).item()
    padded_query = (mask == 0)[:, None, :, None]
    padded_key = (mask == 0)[:, None, None, :]
    junk = torch.rand(s.shape, generator=generator, dtype=torch.float64)
    s2 = torch.where(padded_query | padded_key, junk, s)
    t2 = torch.where(padded_query | padded_key, junk.flip(-1), t)
    assert attention_map_kl(s2, t2, mask).item() == pytest.approx(before, rel=1e-12)


def test_head_count_mismatch_points_to_minilm() -> None:
    with pytest.raises(ValueError, match="minilm"):
        attention_map_kl(torch.rand(1, 2, 3, 3), torch.rand(1, 4, 3, 3))
