"""Supernet: distil the supernet from the teacher with the dynamic dimension
(:mod:`elm_train.training.supernet_training`), and save it with its grown space."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import elm_space
from elm_space import SearchSpace
from elm_train.config import ConfigError
from elm_train.pipeline.sizing import PlanContext, StagePlan, add_tokens, loop_disk
from elm_train.pipeline.stage import Stage
from elm_train.runtime import distributed as dist
from elm_train.runtime.fsio import atomic_directory
from elm_train.search.searching import check_budgets
from elm_train.training.loop import LoopSettings
from elm_train.training.supernet_training import (
    SPACE_FILE,
    SupernetTraining,
    TrainedSupernet,
    load_supernet,
    save_supernet,
)

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
        LoopSettings(
            cfg.deepspeed,
            cfg.seed,
            run.layout.stage_dir("supernet"),
            run.metrics,
            checkpoint_every=cfg.supernet.checkpoint_every,
        ),
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


# --- what later stages load -------------------------------------------------------------------


def trained_supernet(run: Run) -> TrainedSupernet:
    """The trained supernet (with its distillation projections, in eval mode) and grown space."""
    if not (run.layout.supernet_final / SPACE_FILE).is_file():
        raise ConfigError(f"no trained supernet in {run.dir} yet; run elm-train stage supernet")
    cfg = run.config
    teacher = run.teacher_features
    return load_supernet(
        run.layout.supernet_final,
        cfg.supernet.kd,
        cfg.supernet.lm_weight_for(run.causal),
        teacher.width,
        teacher.num_layers,
        cfg.seed,
        cfg.model,
    )


def grown_space(run: Run) -> SearchSpace:
    """The space as supernet training left it (grown FFN widths), without loading weights."""
    if not (run.layout.supernet_final / SPACE_FILE).is_file():
        raise ConfigError(f"no trained supernet in {run.dir} yet; run elm-train stage supernet")
    return elm_space.load(SearchSpace, run.layout.supernet_final / SPACE_FILE)


def estimate(ctx: PlanContext, plan: StagePlan) -> None:
    optim = ctx.config.supernet.optim
    steps, plan.steps = ctx.steps(optim.epochs, optim.max_steps_per_epoch)
    add_tokens(ctx, plan, steps)
    plan.disk = loop_disk(ctx.supernet_params)
    plan.notes.append(f"supernet of {ctx.supernet_params:,} parameters")


STAGE = Stage(
    "supernet",
    "distil the supernet, growing FFNs by PCA",
    execute,
    reads=("data", "teacher"),
    writes=("supernet_final",),
    ranks="all",
    settings=("supernet", "model", "deepspeed"),
    estimate=estimate,
    loaders=(trained_supernet, grown_space),
)
