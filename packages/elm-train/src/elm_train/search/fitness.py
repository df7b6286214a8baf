"""Scoring a path of the trained supernet for the search (``search.fitness``).

- ``kd``: the path's distillation loss on fixed held-out batches (lower is better). The teacher's
  features are computed once and reused for every candidate (they do not depend on the
  student); for the causal family the loss includes the logits term.
- ``wpca``: the W-PCA proxy of the same author (METHOD.md section 2a): the mean over layers and
  batches of the PCA count of each FFN's pre-activations (at the dynamic dimension's eta for the
  block's kind), times the path's parameter count; higher is better. It needs no teacher and no
  labels, only forward passes.
- ``params``: the parameter count alone, the yardstick any fitness must beat.
- ``task``: the mean held-out task score on the multitask-fine-tuned supernet, over the rows the
  multitask stage held out.

:func:`build_fitness` is the one factory for every name, including those a plugin registers with
:func:`register_fitness`. A fitness takes what it scores with from :class:`FitnessInputs`, which
loads each input only when asked (the ``params`` fitness loads no model at all).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import datasets
import torch

import elm_eval
import elm_space
from elm_eval import TaskSpec
from elm_search import Objective
from elm_space import Architecture
from elm_train.config import ConfigError, DynamicConfig, SearchStageConfig
from elm_train.models import ElmSupernet
from elm_train.runtime import faults
from elm_train.runtime.errors import ElmTrainError
from elm_train.training import batches
from elm_train.training.kd import TeacherFeatures, kind_eta, student_features
from elm_train.training.multitask_training import MODEL_INPUTS, task_key
from elm_train.training.pca import pca_count, real_tokens
from elm_train.training.supernet_training import SupernetKD
from elm_train.training.task_distill import EVAL_BATCH_SIZE


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


def sample_heldout(data: datasets.Dataset, cap: int | None, seed: int, task: str) -> datasets.Dataset:
    """At most ``cap`` of a task's held-out rows for the search, a seeded sample kept in row order
    (the held-out rows are sorted, and a training file's order can follow its labels or sources)."""
    if cap is None or len(data) <= cap:
        return data
    return data.select(sorted(random.Random(f"{seed}:task-fitness:{task}").sample(range(len(data)), cap)))


class TaskFitness:
    """Mean over tasks of a path's held-out score, each task with its elm-eval metric (higher is
    better). A NaN score (a constant prediction's correlation) counts as 0."""

    name = "task_score"
    maximize = True

    def __init__(
        self,
        supernet: ElmSupernet,
        heldout: dict[str, tuple[TaskSpec, datasets.Dataset]],
        pad_id: int = 0,
        batch_size: int = EVAL_BATCH_SIZE,
    ) -> None:
        self.supernet = supernet.eval()
        self.heldout = heldout
        self.batches = {
            name: batches.eval_batches(data, batch_size, None, pad_id) for name, (_, data) in heldout.items()
        }

    @torch.no_grad()
    def task_score(self, arch: Architecture, name: str) -> float:
        spec, data = self.heldout[name]
        predictions: list[Any] = []
        for batch in self.batches[name]:
            inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
            logits = self.supernet(**inputs, arch=arch, head="classification", task=task_key(name)).logits
            if spec.task_type == "regression":
                predictions.extend(logits.squeeze(-1).tolist())
            else:
                predictions.extend(logits.argmax(-1).tolist())
        value, _ = elm_eval.compute_metric(spec.metric, predictions, list(data["labels"]))
        return 0.0 if math.isnan(value) else float(value)

    def __call__(self, arch: Architecture) -> float:
        scores = [self.task_score(arch, name) for name in self.heldout]
        return sum(scores) / len(scores)


class FitnessInputs(Protocol):
    """What a fitness may score with. The search stage reads each from the run directory on first
    use; a user's own pipeline can pass any object with these attributes."""

    seed: int
    dynamic: DynamicConfig

    @property
    def pad_id(self) -> int: ...

    @property
    def supernet(self) -> SupernetKD:
        """The trained supernet with its distillation objective, in eval mode."""
        ...

    @property
    def teacher(self) -> TeacherFeatures: ...

    @property
    def validation(self) -> list[dict[str, torch.Tensor]]:
        """Fixed held-out batches of the corpus."""
        ...

    @property
    def multitask(self) -> ElmSupernet:
        """The multitask-fine-tuned supernet (per-task classifiers)."""
        ...

    @property
    def heldout(self) -> dict[str, tuple[TaskSpec, datasets.Dataset]]:
        """The fitness tasks' held-out training rows (encoded, with labels)."""
        ...


Builder = Callable[[SearchStageConfig, FitnessInputs], Fitness]
FITNESSES: dict[str, Builder] = {}
"""``search.fitness`` name -> the function that builds it."""


def register_fitness(name: str) -> Callable[[Builder], Builder]:
    """Register a fitness under ``name`` (a ``plugins:`` module does this at import)."""

    def add(builder: Builder) -> Builder:
        FITNESSES[name] = builder
        return builder

    return add


@register_fitness("kd")
def _kd(settings: SearchStageConfig, inputs: FitnessInputs) -> Fitness:
    return SupernetFitness(inputs.supernet, inputs.teacher, inputs.validation)


@register_fitness("wpca")
def _wpca(settings: SearchStageConfig, inputs: FitnessInputs) -> Fitness:
    return WpcaFitness(inputs.supernet, inputs.validation[: settings.wpca_batches], inputs.dynamic)


@register_fitness("params")
def _params(settings: SearchStageConfig, inputs: FitnessInputs) -> Fitness:
    return ParamsFitness()


@register_fitness("task")
def _task(settings: SearchStageConfig, inputs: FitnessInputs) -> Fitness:
    heldout = {
        name: (spec, sample_heldout(data, settings.task_examples, inputs.seed, name))
        for name, (spec, data) in inputs.heldout.items()
    }
    return TaskFitness(inputs.multitask, heldout, inputs.pad_id)


def check_fitness_name(name: str) -> None:
    """Refuses a ``search.fitness`` no module registered (after the config's plugins are imported)."""
    if name not in FITNESSES:
        raise ConfigError(
            f"search.fitness: {name!r} is not a registered fitness; registered: {', '.join(sorted(FITNESSES))} "
            "(a plugin module listed under plugins: can add one with elm_train.search.fitness.register_fitness)"
        )


def build_fitness(settings: SearchStageConfig, inputs: FitnessInputs) -> Fitness:
    """The fitness ``settings.fitness`` names, built from ``inputs``."""
    check_fitness_name(settings.fitness)
    return FITNESSES[settings.fitness](settings, inputs)


def finite_objective(fitness: Fitness, supernet_dir: Path) -> Objective:
    """The search's objective: ``fitness``, stopping the search on a value it cannot rank."""

    def evaluate(arch: Architecture) -> float:
        value = fitness(arch)
        if not math.isfinite(value):  # a user error (the run diverged), not a bug of the searcher
            raise ElmTrainError(
                f"search: the held-out {fitness.name} of path {arch.to_string()} on the trained supernet "
                f"({supernet_dir}) is {value}, which the search cannot rank: the supernet's "
                "outputs overflow or the distillation loss is not finite on the held-out data. Start a new "
                "run with a lower supernet learning rate or gradient clipping (deepspeed.gradient_clipping)"
            )
        faults.maybe_crash("search-eval")  # test-only fault injection (elm_train.runtime.faults)
        return value

    return Objective(fitness.name, evaluate, maximize=fitness.maximize)
