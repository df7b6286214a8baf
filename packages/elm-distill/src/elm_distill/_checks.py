"""Input checks and mask helpers shared by the losses.

Every loss funnels its inputs through here so a wrong shape or an empty mask is reported with the
argument's name in plain words, not as a broadcasting error from deep inside torch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype losses compute in: at least float32, float64 when any input is float64.

    bf16/fp16 have too few mantissa bits for means over thousands of tokens, standard deviations,
    log-softmax and Pearson correlations, so those are always done in float32 or wider.
    """
    dtype = torch.float32
    for tensor in tensors:
        if tensor.dtype == torch.float64:
            dtype = torch.float64
    return dtype


def check_floating(name: str, tensor: Tensor) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def check_same_shape(student: Tensor, teacher: Tensor, hint: str = "") -> None:
    check_floating("student", student)
    check_floating("teacher", teacher)
    if student.shape != teacher.shape:
        message = f"student has shape {tuple(student.shape)} but teacher has shape {tuple(teacher.shape)}"
        raise ValueError(message + (f"; {hint}" if hint else ""))


def check_rank(name: str, tensor: Tensor, ranks: tuple[int, ...], layout: str) -> None:
    if tensor.dim() not in ranks:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(tensor.shape)}")


def token_mask(mask: Tensor | None, leading: torch.Size, device: torch.device) -> Tensor | None:
    """Validate a padding mask against the leading (batch, token) dims and return it as bool.

    The mask follows the Hugging Face convention (1 = real token, 0 = padding). A mask that marks
    no token at all is an error: a mean over nothing would silently be NaN.
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(leading):
        raise ValueError(
            f"mask has shape {tuple(mask.shape)} but the features need {tuple(leading)} "
            "(one entry per token, 1 = real token, 0 = padding)"
        )
    mask = mask.to(device=device) != 0
    if not bool(mask.any()):
        raise ValueError("mask marks no real token (all zeros): there is nothing to distil")
    return mask


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` over the positions where ``mask`` is true (all positions if None).

    ``values`` and ``mask`` share their shape, or ``mask`` covers the leading dims of ``values``.
    """
    if mask is None:
        return values.mean()
    while mask.dim() < values.dim():
        mask = mask.unsqueeze(-1)
    mask = mask.expand_as(values)
    # where(), not a product: a NaN or inf left in a padded slot must not leak into the loss.
    kept = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return kept.sum() / mask.sum().to(values.dtype)
