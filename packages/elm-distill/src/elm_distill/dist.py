"""DIST: distillation from a stronger teacher by Pearson relations (Huang et al., 2022).

Instead of matching probabilities exactly (KL), DIST asks the student's softened predictions to
be *linearly related* to the teacher's: across classes for each example (inter-class relation)
and across the batch for each class (intra-class relation). A Pearson correlation ignores scale
and offset, so a smaller student is not punished for being less confident than its teacher, only
for ranking classes and examples differently. This is the logits loss of ELM's relational KD
(METHOD.md section 3): ``τ²·(β·inter + γ·intra)`` with ``y = softmax(z/τ)``.

All arithmetic is float32 (float64 stays float64), whatever the input dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from elm_distill._checks import check_rank, check_same_shape, compute_dtype, token_mask

PEARSON_EPS = 1e-8
"""Added to the product of norms in each correlation, as in the DIST paper's code."""


def row_pearson(a: Tensor, b: Tensor, eps: float = PEARSON_EPS) -> Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (``[N, C]`` -> ``[N]``)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def inter_class_relation(student_probs: Tensor, teacher_probs: Tensor) -> Tensor:
    """``1 − mean_i r(student_i, teacher_i)``: do the two rank each example's classes alike?

    Takes probabilities ``[N, C]``; unchanged by any positive affine map of a student row.
    """
    return 1 - row_pearson(student_probs, teacher_probs).mean()


def intra_class_relation(student_probs: Tensor, teacher_probs: Tensor) -> Tensor:
    """``1 − mean_c r(student_:,c, teacher_:,c)``: do the two rank the examples alike per class?

    Takes probabilities ``[N, C]``; unchanged by any positive affine map of a student column.
    With a single row every correlation is 0, so the term is the constant 1 (no gradient).
    """
    return inter_class_relation(student_probs.transpose(0, 1), teacher_probs.transpose(0, 1))


def dist_loss(
    student: Tensor,
    teacher: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    beta: float = 1.0,
    gamma: float = 1.0,
) -> Tensor:
    """DIST loss ``τ²·(β·inter + γ·intra)`` on logits ``[N, C]`` or ``[B, T, V]``.

    For token-level logits every real token is one row (padded rows are dropped before the
    relations are formed), so the intra-class relation runs across all real tokens of the batch.
    Adding a constant to a row of logits leaves the loss unchanged (softmax ignores it), as does
    permuting rows or classes consistently in both inputs.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    check_same_shape(student, teacher, "student and teacher logits must have the same classes")
    check_rank("student logits", student, (2, 3), "[rows, classes] or [batch, tokens, classes]")
    real = token_mask(mask, student.shape[:-1], student.device)
    dtype = compute_dtype(student, teacher)
    s = student.to(dtype)
    t = teacher.to(dtype)
    if real is not None:
        s, t = s[real], t[real]
    else:
        s, t = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1])
    p_s = torch.softmax(s / temperature, dim=-1)
    p_t = torch.softmax(t / temperature, dim=-1)
    relations = beta * inter_class_relation(p_s, p_t) + gamma * intra_class_relation(p_s, p_t)
    return temperature**2 * relations
