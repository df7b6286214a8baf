"""Heads: each layer's head count of the found architecture by CKA between its heads
(:mod:`elm_train.search.head_choice`); a layer whose head count the search chose keeps it unless
``heads.override_searched``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from elm_space import Architecture
from elm_train.config import ConfigError
from elm_train.pipeline.sizing import PlanContext, StagePlan
from elm_train.pipeline.stage import Stage
from elm_train.pipeline.stages import search, supernet
from elm_train.runtime.checkpoint import write_json_atomic
from elm_train.search.head_choice import choose_heads, searched_heads
from elm_train.training import batches

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def execute(run: Run) -> dict[str, Any]:
    arch = search.found_architecture(run)
    cfg = run.config.heads
    if cfg.enabled:
        model = supernet.trained_supernet(run).model
        val = batches.eval_batches(
            run.blocks["validation"], run.config.deepspeed.micro_batch_size, cfg.batches
        )
        keep = None if cfg.override_searched else searched_heads(supernet.grown_space(run), arch)
        final, report = choose_heads(model, arch, val, cfg.cka_threshold, keep)
    else:
        final, report = arch, []
    run.layout.heads_architecture.write_text(final.model_dump_json(indent=2))
    write_json_atomic(run.layout.heads_cka, report)
    return {"before": arch.to_string(), "after": final.to_string(), "heads": [c.heads for c in final.layers]}


# --- what later stages load -------------------------------------------------------------------


def final_architecture(run: Run) -> Architecture:
    """The found path with its head counts chosen: what the retrain stage trains."""
    if not run.layout.heads_architecture.is_file():
        raise ConfigError(f"no head choice in {run.dir} yet; run elm-train stage heads")
    return Architecture.model_validate_json(run.layout.heads_architecture.read_text())


def estimate(ctx: PlanContext, plan: StagePlan) -> None:
    plan.tokens = ctx.config.heads.batches * ctx.config.deepspeed.micro_batch_size * ctx.block


STAGE = Stage(
    "heads",
    "choose each layer's head count by CKA",
    execute,
    reads=("data", "teacher", "supernet", "search"),
    writes=("heads_architecture", "heads_cka"),
    ranks="rank0",
    settings=("heads",),
    estimate=estimate,
    loaders=(final_architecture,),
)
