"""Multitask: fine-tune the trained supernet on the run's tasks at once (METHOD.md section 4,
step 2; :mod:`elm_train.training.multitask_training`), each task distilled from its fine-tuned teacher. The
teachers are the tasks stage's (fine-tuned here when missing, then reused there); a share of each
task's training rows is held out for the search's ``task`` fitness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import datasets
from transformers import AutoModelForSequenceClassification

import elm_eval
from elm_eval import TaskSpec
from elm_train.config import ConfigError
from elm_train.pipeline.sizing import PlanContext, StagePlan, capped_rows, loop_disk, si
from elm_train.pipeline.stage import Stage
from elm_train.pipeline.stages.supernet import trained_supernet
from elm_train.pipeline.task_models import fine_tuned_teacher, load_task
from elm_train.runtime import distributed as dist
from elm_train.runtime.checkpoint import write_json_atomic
from elm_train.runtime.fsio import atomic_directory
from elm_train.training.loop import LoopSettings
from elm_train.training.multitask_training import (
    WEIGHTS_FILE,
    MultitaskKD,
    MultitaskTask,
    MultitaskTraining,
    build_multitask_kd,
    heldout_count,
    heldout_split,
    load_multitask,
    save_multitask,
)
from elm_train.training.task_distill import task_deepspeed, task_spec

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def execute(run: Run) -> dict[str, Any]:
    cfg = run.config
    settings = cfg.multitask
    layout = run.layout
    tasks: list[MultitaskTask] = []
    split: dict[str, Any] = {}
    for name in cfg.multitask_task_names:
        spec, _, train, valid = load_task(run, name)
        teacher_dir = fine_tuned_teacher(run, name, spec, train, valid)
        rows, held = heldout_split(len(train), settings.heldout_fraction, cfg.seed, name)
        teacher = AutoModelForSequenceClassification.from_pretrained(str(teacher_dir))
        tasks.append(MultitaskTask(name, spec, train.select(rows), teacher))
        split[name] = {"train_rows": len(rows), "heldout": held}
        if dist.rank() == 0 and not layout.multitask_heldout_task(name).is_dir():
            with atomic_directory(layout.multitask_heldout_task(name)) as tmp:
                train.select(held).save_to_disk(str(tmp))
    if dist.rank() == 0:
        write_json_atomic(layout.multitask_split, split)
    dist.barrier()
    model = build_multitask_kd(
        trained_supernet(run).model, {t.name: t.spec for t in tasks}, cfg.tasks, cfg.seed
    )
    trainer = MultitaskTraining(
        model,
        tasks,
        settings.optim,
        LoopSettings(
            task_deepspeed(cfg.deepspeed, settings.batch_size, dist.world_size(), "multitask.batch_size"),
            cfg.seed,
            run.layout.stage_dir("multitask"),
            run.metrics,
            checkpoint_every=settings.checkpoint_every,
            pad_id=run.tokenizer.pad_token_id or 0,
        ),
    )
    history = trainer.train()
    if dist.rank() == 0:
        with atomic_directory(layout.multitask_final) as tmp:
            save_multitask(model, tmp)
    dist.barrier()
    return {
        "world_size": dist.world_size(),
        "steps": trainer.total_steps,
        "final_loss": history[-1][1] if history else None,
        "tasks": {
            name: {"train": s["train_rows"], "heldout": len(s["heldout"])} for name, s in split.items()
        },
    }


# --- what later stages load -------------------------------------------------------------------


def _specs(run: Run) -> dict[str, TaskSpec]:
    return {
        name: elm_eval.with_hub_mirrors(task_spec(name, run.config.tasks), run.config.hub_mirrors)
        for name in run.config.multitask_task_names
    }


def multitask_model(run: Run) -> MultitaskKD:
    """The multitask-fine-tuned supernet (per-task classifiers on one pooler), in eval mode."""
    if not (run.layout.multitask_final / WEIGHTS_FILE).is_file():
        raise ConfigError(f"no multitask supernet in {run.dir} yet; run elm-train stage multitask")
    cfg = run.config
    return load_multitask(
        run.layout.multitask_final, trained_supernet(run).model, _specs(run), cfg.tasks, cfg.seed
    )


def heldout(run: Run) -> dict[str, tuple[TaskSpec, datasets.Dataset]]:
    """Each task's spec and the training rows this stage held out (encoded), which the search's
    ``task`` fitness scores."""
    if not run.layout.multitask_split.is_file():
        raise ConfigError(f"no multitask held-out rows in {run.dir} yet; run elm-train stage multitask")
    return {
        name: (spec, datasets.load_from_disk(str(run.layout.multitask_heldout_task(name))))
        for name, spec in _specs(run).items()
    }


def estimate(ctx: PlanContext, plan: StagePlan) -> None:
    mt, cfg = ctx.config.multitask, ctx.config.tasks
    batch = mt.batch_size or ctx.global_batch
    per_epoch, unknown, parts = 0, False, []
    for name in ctx.config.multitask_task_names:
        sizes = capped_rows(ctx, name, parts)
        if sizes is None:
            unknown = True
            continue
        train, _, how = sizes
        kept = train - heldout_count(train, mt.heldout_fraction)
        per_epoch += max(1, kept // batch)
        parts.append(f"{name}: {kept:,} training examples ({how}), {train - kept:,} held out")
    if mt.optim.max_steps_per_epoch:
        per_epoch = min(per_epoch, mt.optim.max_steps_per_epoch)
    steps = per_epoch * mt.optim.epochs
    plan.steps = f"{steps:,}" + (" + unknown" if unknown else "")
    plan.tokens = None if unknown else steps * batch * cfg.max_seq_length
    if unknown:
        plan.tokens_text = f">= {si(steps * batch * cfg.max_seq_length)}"
    plan.disk = loop_disk(ctx.supernet_params)
    plan.notes += [
        f"batches of {batch} examples of one task; teachers: the tasks stage's (fine-tuned here first)",
        *parts,
    ]


STAGE = Stage(
    "multitask",
    "fine-tune the supernet on all tasks at once, from the fine-tuned teachers",
    execute,
    reads=("data", "teacher", "supernet"),
    writes=(
        "multitask_final",
        "multitask_heldout",
        "multitask_split",
        "task_model",
        "task_selection",
        "task_loss_curve",
    ),
    ranks="all",
    settings=("multitask", "tasks"),
    estimate=estimate,
    loaders=(multitask_model, heldout),
    applies=lambda config: config.multitask.enabled,
)
