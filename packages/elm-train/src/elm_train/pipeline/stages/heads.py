"""Heads: each layer's head count of the found architecture by CKA between its heads
(:mod:`elm_train.head_choice`); a layer whose head count the search chose keeps it unless
``heads.override_searched``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from elm_train import batches
from elm_train.checkpoint import write_json_atomic
from elm_train.head_choice import choose_heads, searched_heads

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def execute(run: Run) -> dict[str, Any]:
    run.stage_dir("heads")
    arch = run.architecture(run.layout.search_architecture)
    cfg = run.config.heads
    if cfg.enabled:
        model = run.trained_supernet().model
        val = batches.eval_batches(
            run.blocks["validation"], run.config.deepspeed.micro_batch_size, cfg.batches
        )
        keep = None if cfg.override_searched else searched_heads(run.grown_space(), arch)
        final, report = choose_heads(model, arch, val, cfg.cka_threshold, keep)
    else:
        final, report = arch, []
    run.layout.heads_architecture.write_text(final.model_dump_json(indent=2))
    write_json_atomic(run.layout.heads_cka, report)
    return {"before": arch.to_string(), "after": final.to_string(), "heads": [c.heads for c in final.layers]}
