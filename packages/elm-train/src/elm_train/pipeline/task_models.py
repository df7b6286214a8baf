"""Fine-tuning one model on one task into the run directory, shared by the stages that need a
task model: the tasks stage (the teacher and every student) and the multitask stage (the teachers
it distils from, which the tasks stage then finds done and reuses)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
from transformers import PreTrainedModel

import elm_eval
from elm_eval import TaskData, TaskResult, TaskSpec
from elm_train.config import DeepSpeedConfig
from elm_train.runtime import distributed as dist
from elm_train.runtime.checkpoint import write_json_atomic
from elm_train.runtime.fsio import atomic_directory
from elm_train.training.loop import LoopSettings
from elm_train.training.task_distill import TaskTraining, classifier, encode, task_deepspeed, task_spec

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def load_task(run: Run, name: str) -> tuple[TaskSpec, TaskData, datasets.Dataset, datasets.Dataset]:
    """A task's spec (with the tasks section's caps and the hub mirrors), its data, and its train
    and validation splits encoded with the run's tokenizer."""
    cfg = run.config.tasks
    spec = elm_eval.with_hub_mirrors(task_spec(name, cfg), run.config.hub_mirrors)
    data = elm_eval.load_task_data(spec)
    train = encode(run.tokenizer, data, "train", cfg.max_seq_length)
    valid = encode(run.tokenizer, data, "validation", cfg.max_seq_length)
    return spec, data, train, valid


def train_task_model(
    run: Run,
    name: str,
    who: str,
    source: str | Path,
    teacher: PreTrainedModel | None,
    lr: float,
    epochs: int,
    eval_every: int | None,
    spec: TaskSpec,
    train: datasets.Dataset,
    valid: datasets.Dataset,
    seed: int | None = None,
) -> Path:
    """``layout.task_model(name, who)``, fine-tuned first unless it exists: the best validation
    checkpoint, with its loss curve and selection record beside it. ``seed`` (the run's by
    default) seeds the new head, the batch order and dropout."""
    cfg = run.config.tasks
    seed = run.config.seed if seed is None else seed
    layout = run.layout
    target = layout.task_model(name, who)
    if (target / "config.json").is_file():
        return target
    layout.task_dir(name).mkdir(parents=True, exist_ok=True)
    plan = cfg.for_task(name)
    ds = task_deepspeed(run.config.deepspeed, plan.batch_size, dist.world_size())
    model = classifier(source, spec, seed)
    trainer = TaskTraining(
        f"{name}.{who}",
        model,
        teacher,
        train,
        spec,
        cfg,
        cfg.optim.model_copy(update={"lr": lr, "epochs": epochs}),
        LoopSettings(
            ds,
            seed=seed,
            out_dir=layout.task_training(name, who),
            metrics=run.metrics,
            checkpoint_every=run.config.supernet.checkpoint_every,
            pad_id=run.tokenizer.pad_token_id or 0,
        ),
        validation=valid,
        eval_every=eval_every,
        best_dir=layout.task_best(name, who),
    )
    return train_and_publish(run, name, who, trainer, target)


def train_and_publish(run: Run, name: str, who: str, trainer: TaskTraining, target: Path) -> Path:
    """Run ``trainer`` and publish its best validation checkpoint at ``target`` with its loss
    curve and selection record beside it (rank 0 writes, every rank waits): one route for the
    classification and the question-answering tasks."""
    layout = run.layout
    history = trainer.train()
    if dist.rank() == 0:
        write_json_atomic(layout.task_loss_curve(name, who), [loss for _, loss in history])
        write_json_atomic(
            layout.task_selection(name, who),
            {"best": trainer.best, "evaluations": trainer.evaluations},
        )
        with atomic_directory(target) as tmp:  # its existence says the model is final
            shutil.copytree(trainer.best_dir, tmp, dirs_exist_ok=True)
    dist.barrier()
    return target


def fine_tuned_teacher(
    run: Run, name: str, spec: TaskSpec, train: datasets.Dataset, valid: datasets.Dataset
) -> Path:
    """The task's fine-tuned teacher (trained on the labels once per run)."""
    plan = run.config.tasks.for_task(name)
    return train_task_model(
        run,
        name,
        "teacher",
        run.teacher_source,
        None,
        plan.teacher_lr,
        plan.teacher_epochs,
        None,
        spec,
        train,
        valid,
    )


def selected_result(
    run: Run,
    name: str,
    who: str,
    model: PreTrainedModel,
    reported: tuple[str, str],
    sizes: tuple[int, int],
    own_settings: dict[str, Any],
    ds: DeepSpeedConfig,
    lr: float,
    epochs: int,
    eval_every: int | None,
) -> TaskResult:
    """The elm-eval result of ``who``'s selected model on task ``name`` (the run directory's name):
    its best validation evaluation and loss curve as training recorded them. ``reported``: the
    result's (task, metric); ``sizes``: (train, validation) examples; ``own_settings`` first in
    the settings, then what every task fine-tuning records."""
    layout = run.layout
    task, metric = reported
    selection = json.loads(layout.task_selection(name, who).read_text())
    best = selection["best"]
    return TaskResult(
        model=who,
        task=task,
        metric=metric,
        score=best["score"],
        validation_metrics=best["values"],
        num_parameters=sum(p.numel() for p in model.parameters()),
        num_train_examples=sizes[0],
        num_validation_examples=sizes[1],
        train_loss_curve=json.loads(layout.task_loss_curve(name, who).read_text()),
        settings={
            **own_settings,
            "epochs": epochs,
            "lr": lr,
            "batch_size": ds.micro_batch_size * ds.gradient_accumulation_steps * dist.world_size(),
            "eval_every": eval_every or "epoch",
            "best_step": best["step"],
            "evaluations": [[e["step"], e["score"]] for e in selection["evaluations"]],
        },
    )
