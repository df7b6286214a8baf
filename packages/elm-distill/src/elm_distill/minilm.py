"""MiniLM-v2 self-attention relation distillation (Wang et al., 2021).

A relation is a token-by-token matrix ``softmax(x_h x_hᵀ / sqrt(d_r))`` built from one vector
type (queries, keys, values, or hidden states) split into a chosen number of *relation heads*.
The matrix is ``T x T`` whatever the width, so student and teacher may differ in hidden size and
in attention-head count: only the number of relation heads must divide both widths. The loss is
KL(teacher ‖ student) per query token, averaged over real query tokens, relation heads and the
batch; padded tokens are masked out as keys and dropped as queries.

Computed in float32 (float64 stays float64) whatever the input dtype: the scores pass through a
log-softmax whose differences bf16 cannot resolve.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from elm_distill._checks import check_floating, check_rank, compute_dtype, masked_mean, token_mask

_MASKED_SCORE = -1e9
"""Score given to padded keys: finite, so no inf − inf appears in the KL or its gradient."""


class QKV(NamedTuple):
    """One layer's query, key and value vectors, each ``[batch, tokens, width]`` (heads concatenated)."""

    query: Tensor
    key: Tensor
    value: Tensor


def _log_relations(x: Tensor, heads: int, keys: Tensor | None) -> Tensor:
    batch, tokens, width = x.shape
    head_width = width // heads
    x = x.reshape(batch, tokens, heads, head_width).transpose(1, 2)  # [B, R, T, d]
    scores = x @ x.transpose(-1, -2) / head_width**0.5
    if keys is not None:
        scores = scores.masked_fill(~keys[:, None, None, :], _MASKED_SCORE)
    return torch.log_softmax(scores, dim=-1)


def self_relation_loss(
    student: Tensor, teacher: Tensor, mask: Tensor | None = None, num_relation_heads: int = 12
) -> Tensor:
    """KL between the teacher's and the student's ``x xᵀ`` relations for one vector type.

    ``student`` is ``[B, T, D_s]`` and ``teacher`` ``[B, T, D_t]``; ``num_relation_heads`` must
    divide both widths (MiniLM-v2 uses 12 for base-size and 48 or 64 for large teachers).
    """
    check_floating("student", student)
    check_floating("teacher", teacher)
    check_rank("student", student, (3,), "[batch, tokens, width]")
    check_rank("teacher", teacher, (3,), "[batch, tokens, width]")
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(
            f"student has {tuple(student.shape[:2])} (batch, tokens) but teacher has "
            f"{tuple(teacher.shape[:2])}: both must see the same tokens"
        )
    if num_relation_heads < 1:
        raise ValueError(f"num_relation_heads must be >= 1, got {num_relation_heads}")
    for name, width in (("student", student.shape[-1]), ("teacher", teacher.shape[-1])):
        if width % num_relation_heads:
            raise ValueError(
                f"num_relation_heads={num_relation_heads} does not divide the {name} width {width}"
            )
    real = token_mask(mask, student.shape[:2], student.device)
    dtype = compute_dtype(student, teacher)
    log_s = _log_relations(student.to(dtype), num_relation_heads, real)
    log_t = _log_relations(teacher.to(dtype), num_relation_heads, real)
    pointwise = log_t.exp() * (log_t - log_s)
    if real is not None:
        pointwise = pointwise.masked_fill(~real[:, None, None, :], 0.0)
    per_query = pointwise.sum(dim=-1)  # [B, R, T]
    query_mask = None if real is None else real[:, None, :].expand_as(per_query)
    return masked_mean(per_query, query_mask)


def minilm_v2_loss(
    student: QKV | tuple[Tensor, Tensor, Tensor],
    teacher: QKV | tuple[Tensor, Tensor, Tensor],
    mask: Tensor | None = None,
    num_relation_heads: int = 12,
) -> Tensor:
    """Sum of the query-query, key-key and value-value relation losses of one layer pair.

    MiniLM-v2 distils one teacher layer (an upper-middle one for large teachers, the last for
    base-size ones) into the student's last layer; pick the pair in the objective's term config.
    """
    if len(student) != 3 or len(teacher) != 3:
        raise ValueError("student and teacher must each be a (query, key, value) triple")
    return sum(
        (self_relation_loss(s, t, mask, num_relation_heads) for s, t in zip(student, teacher, strict=True)),
        start=torch.zeros((), dtype=torch.float32, device=student[0].device),
    )
