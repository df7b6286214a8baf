"""Prediction-layer losses: soft cross-entropy and KL with temperature, MSE for regression heads.

Logits are ``[N, C]`` (one prediction per sequence) or ``[B, T, V]`` (one per token, e.g. a
language-model head); the optional mask covers every dim but the class dim (``[N]`` or
``[B, T]``, 1 = real) and drops padded rows from the mean. Rows are averaged, classes summed, so
the value is the usual per-example cross-entropy / KL. Softmaxes are taken in float32 (float64
stays float64) whatever the input dtype, because bf16 log-probabilities are too coarse for
near-identical distributions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from elm_distill._checks import check_rank, check_same_shape, compute_dtype, masked_mean, token_mask


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _rows(student: Tensor, teacher: Tensor, mask: Tensor | None) -> tuple[Tensor | None, torch.dtype]:
    check_same_shape(student, teacher, "student and teacher logits must have the same classes")
    check_rank("student logits", student, (2, 3), "[rows, classes] or [batch, tokens, classes]")
    return token_mask(mask, student.shape[:-1], student.device), compute_dtype(student, teacher)


def soft_cross_entropy(
    student: Tensor,
    teacher: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    t_squared: bool = False,
) -> Tensor:
    """Cross-entropy of the student's softened predictions against the teacher's.

    ``−Σ_c softmax(t/T)_c · log softmax(s/T)_c`` per row, averaged over real rows. Differs from
    :func:`kl_div_loss` only by the teacher's entropy, a constant for the student, so both give
    the same gradients; this one is the EfficientBERT baseline (T = 1, no T² factor). The
    reference code also divides by the number of classes; that is a constant weight of 1/C here.
    ``t_squared`` multiplies by T² to keep gradient magnitudes comparable across temperatures.
    """
    _check_temperature(temperature)
    real, dtype = _rows(student, teacher, mask)
    log_p_student = torch.log_softmax(student.to(dtype) / temperature, dim=-1)
    p_teacher = torch.softmax(teacher.to(dtype) / temperature, dim=-1)
    per_row = -(p_teacher * log_p_student).sum(dim=-1)
    loss = masked_mean(per_row, real)
    return loss * temperature**2 if t_squared else loss


def kl_div_loss(
    student: Tensor,
    teacher: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    t_squared: bool = True,
) -> Tensor:
    """KL(teacher ‖ student) of temperature-softened predictions (Hinton et al.).

    Summed over classes and averaged over real rows. With ``t_squared`` (the default, as in
    Hinton's recipe) the result is multiplied by T², because softening by T shrinks the
    gradients by 1/T²; set it False to get the plain KL value.
    """
    _check_temperature(temperature)
    real, dtype = _rows(student, teacher, mask)
    log_p_student = torch.log_softmax(student.to(dtype) / temperature, dim=-1)
    log_p_teacher = torch.log_softmax(teacher.to(dtype) / temperature, dim=-1)
    per_row = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)
    loss = masked_mean(per_row, real)
    return loss * temperature**2 if t_squared else loss


def logits_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error between regression outputs (e.g. STS-B scores), or logits themselves.

    ``teacher`` may be the teacher's outputs or the gold labels, shaped like ``student``
    (``[N]``, ``[N, K]`` or ``[B, T, K]``). For ``[N]`` the mask is ``[N]``; otherwise it covers
    every dim but the last.
    """
    check_same_shape(student, teacher, "reshape the labels to the student's output shape")
    check_rank("student", student, (1, 2, 3), "[rows], [rows, outputs] or [batch, tokens, outputs]")
    leading = student.shape if student.dim() == 1 else student.shape[:-1]
    real = token_mask(mask, leading, student.device)
    dtype = compute_dtype(student, teacher)
    return masked_mean((student.to(dtype) - teacher.to(dtype)).pow(2), real)
