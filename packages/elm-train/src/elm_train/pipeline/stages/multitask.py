"""Multitask: fine-tune the trained supernet on the run's tasks at once (METHOD.md section 4,
step 2; :mod:`elm_train.multitask_training`), each task distilled from its fine-tuned teacher. The
teachers are the tasks stage's (fine-tuned here when missing, then reused there); a share of each
task's training rows is held out for the search's ``task`` fitness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers import AutoModelForSequenceClassification

from elm_train import distributed as dist
from elm_train.checkpoint import write_json_atomic
from elm_train.fsio import atomic_directory
from elm_train.multitask_training import (
    MultitaskTask,
    MultitaskTraining,
    build_multitask_kd,
    heldout_split,
    save_multitask,
)
from elm_train.pipeline.task_models import fine_tuned_teacher, load_task
from elm_train.task_distill import task_deepspeed

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def execute(run: Run) -> dict[str, Any]:
    cfg = run.config
    settings = cfg.multitask
    layout = run.layout
    run.stage_dir("multitask")
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
        run.trained_supernet().model, {t.name: t.spec for t in tasks}, cfg.tasks, cfg.seed
    )
    trainer = MultitaskTraining(
        model,
        tasks,
        settings.optim,
        task_deepspeed(cfg.deepspeed, settings.batch_size, dist.world_size(), "multitask.batch_size"),
        seed=cfg.seed,
        out_dir=run.stage_dir("multitask"),
        pad_id=run.tokenizer.pad_token_id or 0,
        metrics=run.metrics,
        checkpoint_every=settings.checkpoint_every,
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
