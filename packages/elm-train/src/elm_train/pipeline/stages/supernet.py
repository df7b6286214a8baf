"""Supernet: distil the supernet from the teacher with the dynamic dimension
(:mod:`elm_train.supernet_training`), and save it with its grown space."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import elm_space
from elm_train import distributed as dist
from elm_train.fsio import atomic_directory
from elm_train.searching import check_budgets
from elm_train.supernet_training import SupernetTraining, TrainedSupernet, save_supernet

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def execute(run: Run) -> dict[str, Any]:
    cfg = run.config
    # the real vocabulary is known now: a budget no architecture meets stops here, not at search
    check_budgets(run.initial_space, cfg.search, cfg.data.block_size)
    trainer = SupernetTraining(
        run.initial_space,
        run.teacher_features,
        run.blocks["train"],
        cfg.supernet,
        cfg.deepspeed,
        seed=cfg.seed,
        out_dir=run.stage_dir("supernet"),
        metrics=run.metrics,
        model=cfg.model,
    )
    history = trainer.train()
    if dist.rank() == 0:
        with atomic_directory(run.layout.supernet_final) as tmp:
            save_supernet(TrainedSupernet(trainer.model, trainer.space, trainer.widths), tmp)
    return {
        "world_size": dist.world_size(),
        "steps": trainer.total_steps,
        "final_loss": history[-1][1] if history else None,
        "space_mean_params": elm_space.mean_params(trainer.space),
        "grown_pairs": trainer.grown_pairs,
    }
