"""Attention-map distillation (TinyBERT-style), for when the maps themselves are wanted.

ELM's own recipe never uses the maps (METHOD.md section 3), and when student and teacher have
different head counts the maps cannot be paired; :func:`elm_distill.minilm.self_relation_loss`
is the head-count-free alternative.
"""

from __future__ import annotations

import torch
from torch import Tensor

from elm_distill._checks import check_rank, check_same_shape, compute_dtype, masked_mean, token_mask

PROB_FLOOR = 1e-12
"""Student probabilities are clamped here before the log, so an exact zero cannot give inf."""


def attention_map_kl(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL(teacher ‖ student) between attention probabilities ``[B, heads, T, T]``, per query row.

    Takes the probabilities a Hugging Face model returns with ``output_attentions=True`` (load it
    with ``attn_implementation="eager"``; sdpa returns none). Padded keys are left out of the
    sum and padded queries out of the mean, which runs over batch, heads and real queries.
    Computed in float32 (float64 stays float64).
    """
    check_same_shape(
        student, teacher, "attention maps pair only with equal head counts (see elm_distill.minilm)"
    )
    check_rank("student attention", student, (4,), "[batch, heads, tokens, tokens]")
    if student.shape[-1] != student.shape[-2]:
        raise ValueError(f"attention maps must be square over tokens, got shape {tuple(student.shape)}")
    real = token_mask(mask, torch.Size((student.shape[0], student.shape[-1])), student.device)
    dtype = compute_dtype(student, teacher)
    p_t = teacher.to(dtype)
    log_p_s = student.to(dtype).clamp_min(PROB_FLOOR).log()
    pointwise = torch.xlogy(p_t, p_t) - p_t * log_p_s
    if real is not None:
        pointwise = pointwise.masked_fill(~real[:, None, None, :], 0.0)
    per_query = pointwise.sum(dim=-1)  # [B, H, T]
    query_mask = None if real is None else real[:, None, :].expand_as(per_query)
    return masked_mean(per_query, query_mask)
