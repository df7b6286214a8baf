"""Scoring a path of the trained supernet for the search (``search.fitness``).

- ``kd``: the path's distillation loss on fixed held-out batches (lower is better). The teacher's
  features are computed once and reused for every candidate (they do not depend on the
  student); for the causal family the loss includes the logits term.
- ``wpca``: the W-PCA proxy of the same author (METHOD.md section 2a): the mean over layers and
  batches of the PCA count of each FFN's pre-activations (at the dynamic dimension's eta for the
  block's kind), times the path's parameter count; higher is better. It needs no teacher and no
  labels, only forward passes.
- ``params``: the parameter count alone, the yardstick any fitness must beat.
- ``task``: the mean held-out task score on the multitask-fine-tuned supernet
  (:class:`elm_train.multitask_training.TaskFitness`, built by the search stage from the
  multitask stage's outputs).
"""

from __future__ import annotations

from typing import Protocol

import torch

import elm_space
from elm_space import Architecture
from elm_train.config import ConfigError, DynamicConfig, SearchStageConfig
from elm_train.kd import TeacherFeatures, kind_eta, student_features
from elm_train.pca import pca_count, real_tokens
from elm_train.supernet_training import SupernetKD


class Fitness(Protocol):
    """A named score of an architecture, and which way is better."""

    name: str
    maximize: bool

    def __call__(self, arch: Architecture) -> float: ...


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


class WpcaFitness:
    """Layer-mean PCA count of the path's FFN pre-activations, times its parameters (W-PCA)."""

    name = "wpca"
    maximize = True

    def __init__(
        self,
        model: SupernetKD,
        val: list[dict[str, torch.Tensor]],
        dynamic: DynamicConfig,
        weighted: bool = True,
    ) -> None:
        self.model = model.eval()
        self.val = val
        self.eta_bert, self.eta_mobile = dynamic.eta_bert, dynamic.eta_mobile
        self.weighted = weighted

    @torch.no_grad()
    def pca_mean(self, arch: Architecture) -> float:
        counts = []
        for batch in self.val:
            mask = batch["attention_mask"]
            out = self.model.supernet(
                batch["input_ids"], arch=arch, attention_mask=mask, output_ffn_pre_activations=True
            )
            for choice, features in zip(arch.layers, out.ffn_pre_activations, strict=True):
                eta = kind_eta(choice.kind, self.eta_bert, self.eta_mobile)
                counts.append(pca_count(real_tokens(features, mask), eta))
        return sum(counts) / len(counts)

    def __call__(self, arch: Architecture) -> float:
        mean = self.pca_mean(arch)
        return mean * elm_space.count_params(arch) if self.weighted else mean


class ParamsFitness:
    """The parameter count (without a head): the largest architecture within the budgets wins."""

    name = "params"
    maximize = True

    def __call__(self, arch: Architecture) -> float:
        return float(elm_space.count_params(arch))


def build_fitness(
    settings: SearchStageConfig,
    model: SupernetKD,
    teacher: TeacherFeatures,
    val: list[dict[str, torch.Tensor]],
    dynamic: DynamicConfig,
) -> Fitness:
    """The fitness ``settings.fitness`` names, over the held-out batches ``val``."""
    if settings.fitness == "kd":
        return SupernetFitness(model, teacher, val)
    if settings.fitness == "wpca":
        return WpcaFitness(model, val[: settings.wpca_batches], dynamic)
    if settings.fitness == "task":
        raise ConfigError(
            "search.fitness: 'task' scores paths on the multitask supernet's held-out rows; "
            "build it with TaskFitness (the pipeline does when multitask.enabled)"
        )
    return ParamsFitness()
