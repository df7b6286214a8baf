"""Losses between token features: hidden states, embeddings and attention-sublayer outputs.

The same two losses serve every token-level feature. Distilling the attention sublayer's output
(TinyBERT / EfficientBERT style) is :func:`hidden_mse` or :func:`pearson_hidden_loss` applied to
the tapped attention outputs; a separate function would only repeat this one.

Both losses take features ``[B, T, C]`` from student and teacher (project the student to the
teacher's width first, see :mod:`elm_distill.projection`) and a padding mask ``[B, T]`` (1 = real
token). Padded tokens never count, unlike the reference code, which averages over them. Inputs may
be bf16 or fp16: the arithmetic is done in float32 (float64 stays float64), and the returned
scalar is float32/float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from elm_distill._checks import (
    check_floating,
    check_rank,
    check_same_shape,
    compute_dtype,
    masked_mean,
    token_mask,
)

PEARSON_EPS = 1e-6
"""Added to each channel's standard deviation before dividing (METHOD.md section 3)."""

_PROJECT_HINT = "project the student to the teacher's width first (elm_distill.WidthProjection)"


def hidden_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over the real tokens' channels.

    The mean runs over (real tokens x channels), so the value does not depend on how much
    padding a batch happens to carry.
    """
    check_same_shape(student, teacher, _PROJECT_HINT)
    check_rank("student", student, (3,), "[batch, tokens, channels]")
    real = token_mask(mask, student.shape[:2], student.device)
    dtype = compute_dtype(student, teacher)
    squared = (student.to(dtype) - teacher.to(dtype)).pow(2)
    return masked_mean(squared, real)


def standardize_over_tokens(features: Tensor, mask: Tensor | None = None, eps: float = PEARSON_EPS) -> Tensor:
    """Standardise each (sample, channel) over that sample's real tokens.

    Mean and standard deviation use only real tokens, and the standard deviation is the
    population one (divide by the token count), so one real token gives zeros rather than NaN and
    the MSE of two standardised tensors is exactly 2·(1 − Pearson r) per channel (up to ``eps``).
    The reference code uses the unbiased estimate; the two differ by a factor sqrt(n/(n−1)).
    Padded positions of the result are zero. Returned in float32 (float64 for float64 input).
    """
    check_floating("features", features)
    check_rank("features", features, (3,), "[batch, tokens, channels]")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    real = token_mask(mask, features.shape[:2], features.device)
    x = features.to(compute_dtype(features))
    ones = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
    weights = (ones if real is None else real.to(x.dtype)).unsqueeze(-1)  # [B, T, 1]
    count = weights.sum(dim=1, keepdim=True).clamp_min(1.0)  # [B, 1, 1]
    # Padded slots are replaced (not multiplied) so a NaN there cannot reach the statistics.
    x = torch.where(weights > 0, x, torch.zeros((), dtype=x.dtype, device=x.device))
    mean = x.sum(dim=1, keepdim=True) / count
    centred = (x - mean) * weights
    variance = centred.pow(2).sum(dim=1, keepdim=True) / count
    # sqrt has an infinite slope at 0; route constant channels around it so gradients stay finite.
    positive = variance > 0
    std = torch.where(positive, torch.sqrt(torch.where(positive, variance, torch.ones_like(variance))), 0.0)
    # A constant channel is all zeros after centring; keep it zero even when eps is 0.
    denominator = std + eps
    return centred / torch.where(denominator > 0, denominator, 1.0)


def pearson_hidden_loss(
    student: Tensor, teacher: Tensor, mask: Tensor | None = None, eps: float = PEARSON_EPS
) -> Tensor:
    """PKD-style relational hidden loss: MSE between per-channel standardised features.

    Standardising each channel over a sample's tokens removes its scale and offset, so the
    student is asked to reproduce how the teacher's channels vary across tokens, not their
    magnitudes; a block may keep its own scale (the "preserve block characteristics" idea of
    METHOD.md section 3). Consequently the loss is unchanged when the student's channels are
    scaled by positive factors or shifted.
    """
    check_same_shape(student, teacher, _PROJECT_HINT)
    check_rank("student", student, (3,), "[batch, tokens, channels]")
    real = token_mask(mask, student.shape[:2], student.device)
    squared = (standardize_over_tokens(student, mask, eps) - standardize_over_tokens(teacher, mask, eps)).pow(
        2
    )
    return masked_mean(squared, real)
