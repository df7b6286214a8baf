"""Multi-task fine-tuning of the trained supernet (METHOD.md section 4, step 2).

Each optimizer step trains one task on one path: the epoch's steps are the tasks' steps (each task
``len(train) // global batch`` of them, at least one) in an order shuffled per epoch, so a task
comes up in proportion to its size; the path is sampled from ``(seed, "multitask-path", step)``,
so every rank and every micro-batch of the step trains the same one. The loss is the supernet
stage's hidden-state distillation (its objective and trained projections) from that task's
fine-tuned teacher, plus the prediction loss of task fine-tuning (``TaskStageConfig.logits_loss``;
MSE for regression) between the path's logits and the teacher's. Each task has its own classifier
on one shared pooler (:class:`~elm_train.models.ElmSupernet` built with ``tasks=``); everything else
starts from the trained supernet's weights.

:func:`heldout_split` keeps a share of each task's training rows out of training; the search's
``task`` fitness (:class:`elm_train.search.fitness.TaskFitness`) scores a path on them.
"""

from __future__ import annotations

import copy
import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

import elm_space
from elm_distill import DistillationLoss, Features, get_loss, logits_mse
from elm_eval import TaskSpec
from elm_space import Architecture
from elm_train.config import OptimConfig, TaskStageConfig
from elm_train.models import ElmSupernet
from elm_train.runtime import distributed as dist
from elm_train.runtime.checkpoint import write_json_atomic
from elm_train.runtime.errors import ElmTrainError
from elm_train.training import batches
from elm_train.training.kd import student_features
from elm_train.training.loop import LoopSettings, TrainLoop
from elm_train.training.supernet_training import SupernetKD, drop_unsampled_gradients
from elm_train.training.task_distill import TaskTeacher

WEIGHTS_FILE = "multitask.safetensors"
TASKS_FILE = "tasks.json"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def task_key(name: str) -> str:
    """A task name as a classifier key (an identifier: ``tweet-sentiment`` -> ``tweet_sentiment``)."""
    key = re.sub(r"\W", "_", name)
    return key if key.isidentifier() else f"t_{key}"


def heldout_split(num_rows: int, fraction: float, seed: int, task: str) -> tuple[list[int], list[int]]:
    """(training rows, held-out rows) of a task's ``num_rows`` training examples: a seeded shuffle,
    ``round(fraction * num_rows)`` rows held out (at least 1, and at least 1 left to train on)."""
    if num_rows < 2:
        raise ElmTrainError(
            f"multitask: task {task!r} has {num_rows} training example(s); holding out rows for the "
            "search (multitask.heldout_fraction) needs at least 2"
        )
    order = list(range(num_rows))
    random.Random(f"{seed}:multitask-heldout:{task}").shuffle(order)
    held = heldout_count(num_rows, fraction)
    return sorted(order[held:]), sorted(order[:held])


def heldout_count(num_rows: int, fraction: float) -> int:
    """How many of ``num_rows`` training examples :func:`heldout_split` holds out (the plan's
    estimate uses it too): ``round(fraction * num_rows)``, at least 1 and at least 1 left."""
    return min(num_rows - 1, max(1, round(fraction * num_rows)))


@dataclass(frozen=True)
class MultitaskTask:
    """One task of the multitask stage: its spec, its training rows (encoded, with labels) and its
    fine-tuned teacher (a sequence classifier)."""

    name: str
    spec: TaskSpec
    train: datasets.Dataset
    teacher: PreTrainedModel


class MultitaskKD(nn.Module):
    """The supernet with per-task classifiers and the distillation objective, trained by one engine."""

    def __init__(
        self,
        supernet: ElmSupernet,
        objective: DistillationLoss,
        specs: dict[str, TaskSpec],
        settings: TaskStageConfig,
    ) -> None:
        super().__init__()
        self.supernet = supernet
        self.objective = objective
        self.specs = dict(specs)
        self.cfg = settings
        self.logits_loss = get_loss(settings.logits_loss)

    def forward(
        self, batch: dict[str, torch.Tensor], arch: Architecture, task: str, teacher: Features
    ) -> tuple[torch.Tensor, dict[str, float]]:
        spec = self.specs[task]
        inputs = {k: v for k, v in batch.items() if k in MODEL_INPUTS}
        out = self.supernet(
            **inputs, arch=arch, head="classification", task=task_key(task), output_hidden_states=True
        )
        student = student_features(out)
        logits, student.logits = student.logits, None
        teacher_logits, teacher.logits = teacher.logits, None
        hidden = self.objective(student, teacher, batch["attention_mask"]).total
        assert logits is not None and teacher_logits is not None
        if spec.task_type == "regression":
            gold = self.cfg.regression_target == "gold"
            target = batch["labels"] if gold else teacher_logits.squeeze(-1)
            prediction = logits_mse(logits.squeeze(-1), target.to(logits.dtype))
        else:
            prediction = self.logits_loss(logits, teacher_logits, None, **self.cfg.logits_params)
        loss = hidden + self.cfg.logits_weight * prediction
        return loss, {"hidden_loss": float(hidden.detach()), "kd_loss": float(prediction.detach())}


def build_multitask_kd(
    trained: SupernetKD, specs: dict[str, TaskSpec], settings: TaskStageConfig, seed: int
) -> MultitaskKD:
    """A :class:`MultitaskKD` initialised from the trained supernet (its backbone, LM head and
    distillation projections); the pooler and the classifiers are new (seeded)."""
    torch.manual_seed(seed)
    space = trained.supernet.space
    supernet = ElmSupernet(
        space, trained.supernet.settings, tasks={task_key(n): s.num_labels for n, s in specs.items()}
    )
    missing, unexpected = supernet.load_state_dict(trained.supernet.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("pooler.", "classifiers.")) for k in missing), missing
    return MultitaskKD(supernet, copy.deepcopy(trained.objective), specs, settings)


class MultitaskTraining(TrainLoop):
    """The multitask loop; ``train()`` runs it (resuming from ``out_dir`` if it can)."""

    stage = "multitask"

    def __init__(
        self,
        model: MultitaskKD,
        tasks: list[MultitaskTask],
        optim: OptimConfig,
        loop: LoopSettings,
    ) -> None:
        if not tasks:
            raise ElmTrainError("multitask training needs at least one task (multitask.tasks is empty)")
        self.model = model
        self.tasks = {t.name: t for t in tasks}
        self.space = model.supernet.space
        self.teachers = {t.name: TaskTeacher(t.teacher, tap=True) for t in tasks}
        self.global_batch = loop.deepspeed.global_batch  # examples a step over all processes
        self.arch: Architecture | None = None
        self.task: str | None = None
        super().__init__(model, tasks[0].train, optim, loop)  # tasks[0].train: unused, see micro_batch

    # --- the schedule ----------------------------------------------------------------------
    def task_steps(self, name: str) -> int:
        """A task's optimizer steps per (uncapped) epoch: its examples over the global batch."""
        return max(1, len(self.tasks[name].train) // self.global_batch)

    @lru_cache(maxsize=4)  # noqa: B019 (one loop object per run; the cache dies with it)
    def schedule(self, epoch: int) -> tuple[str, ...]:
        """The task of each step of ``epoch`` (cut to the epoch's length), shuffled per epoch."""
        order = [name for name in self.tasks for _ in range(self.task_steps(name))]
        random.Random(f"{self.seed}:multitask-order:{epoch}").shuffle(order)
        return tuple(order)

    def steps_in_epoch(self, global_batch: int, cap: int | None) -> int:
        steps = sum(self.task_steps(name) for name in self.tasks)
        return min(steps, cap) if cap else steps

    @lru_cache(maxsize=16)  # noqa: B019
    def row_order(self, name: str, epoch: int) -> tuple[int, ...]:
        order = list(range(len(self.tasks[name].train)))
        random.Random(f"{self.seed}:multitask-rows:{name}:{epoch}").shuffle(order)
        return tuple(order)

    def step_task(self, step: int) -> str:
        epoch, index = divmod(step, self.per_epoch)
        return self.schedule(epoch)[index]

    def micro_batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        """Rows of the step's task only: its ``k``-th step of the epoch reads the ``k``-th global
        batch of the task's shuffled rows (wrapping around a task smaller than a batch)."""
        epoch, index = divmod(step, self.per_epoch)
        plan = self.schedule(epoch)
        name = plan[index]
        k = plan[:index].count(name)
        order = self.row_order(name, epoch)
        size = self.ds.micro_batch_size
        start = k * self.global_batch + (micro * dist.world_size() + dist.rank()) * size
        rows = [order[(start + i) % len(order)] for i in range(size)]
        return batches.collate(self.tasks[name].train[rows], self.pad_id)

    # --- one step ----------------------------------------------------------------------------
    def begin_step(self, step: int) -> None:
        self.task = self.step_task(step)
        self.arch = elm_space.sample(self.space, batches.step_rng(self.seed, "multitask-path", step))

    def micro_loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        assert self.arch is not None and self.task is not None
        teacher = self.teachers[self.task](batch)
        loss, logs = self.engine(batch, self.arch, self.task, teacher)
        return loss, {**logs, "task": self.task, "arch": self.arch.to_string()}

    def before_optimizer_step(self, step: int) -> None:
        """Only the sampled path and the step's classifier are trained (no decay elsewhere)."""
        assert self.arch is not None and self.task is not None
        supernet = self.model.supernet
        drop_unsampled_gradients(supernet, self.arch)
        for name, head in supernet.classifiers.items():
            if name != task_key(self.task):
                for p in head.parameters():
                    p.grad = None
        for p in supernet.lm_head.parameters():
            p.grad = None

    def train(self) -> list[tuple[int, float]]:
        try:
            return super().train()
        finally:
            for teacher in self.teachers.values():
                teacher.close()


# --- saving ------------------------------------------------------------------------------------


def save_multitask(model: MultitaskKD, directory: Path) -> None:
    """Weights (safetensors) and the tasks (name, classifier key, labels) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    tasks = {n: {"key": task_key(n), "num_labels": s.num_labels} for n, s in model.specs.items()}
    write_json_atomic(directory / TASKS_FILE, tasks)
    elm_space.save(model.supernet.space, directory / "space.json")


def load_multitask(
    directory: Path, trained: SupernetKD, specs: dict[str, TaskSpec], settings: TaskStageConfig, seed: int
) -> MultitaskKD:
    """A saved multitask supernet (eval mode); ``trained`` is the supernet stage's model, which
    gives the structure (it is not changed)."""
    saved = json.loads((directory / TASKS_FILE).read_text())
    if set(saved) != set(specs):
        raise ElmTrainError(
            f"{directory}: the multitask supernet there was trained on tasks {sorted(saved)}, but the "
            f"config asks for {sorted(specs)}; use the run's own config, or another --run-dir"
        )
    model = build_multitask_kd(trained, specs, settings, seed)
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    return model.eval()
