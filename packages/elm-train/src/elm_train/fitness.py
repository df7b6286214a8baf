"""Scoring a supernet path for the search: its distillation loss on fixed held-out batches.

The teacher's features are computed once and reused for every candidate (they do not depend on
the student). For the causal family the loss includes the logits term.
"""

from __future__ import annotations

import torch

from elm_space import Architecture
from elm_train.kd import TeacherFeatures, student_features
from elm_train.supernet_training import SupernetKD


class SupernetFitness:
    """Mean distillation loss of a supernet path over fixed held-out batches (lower is better)."""

    name = "distill_loss"
    maximize = False

    def __init__(
        self, model: SupernetKD, teacher: TeacherFeatures, val: list[dict[str, torch.Tensor]]
    ) -> None:
        self.model = model.eval()
        self.val = val
        self.teacher = [teacher(b["input_ids"], b["attention_mask"]) for b in val]

    @torch.no_grad()
    def __call__(self, arch: Architecture) -> float:
        total = 0.0
        for batch, feats in zip(self.val, self.teacher, strict=True):
            mask = batch["attention_mask"]
            out = self.model.student(batch["input_ids"], mask, arch)
            total += float(self.model.objective(student_features(out), feats, mask).total)
        return total / len(self.val)
