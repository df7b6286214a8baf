"""Teacher: a checkpoint teacher is described; with ``teacher.train`` a GPT-2-style stand-in is
first trained on the corpus (see :mod:`elm_train.teacher_training`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from elm_train import distributed as dist
from elm_train import teacher as teacher_lib
from elm_train.checkpoint import write_json_atomic
from elm_train.fsio import atomic_directory
from elm_train.teacher_training import STAND_IN_NOTE, train_stand_in

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def _train(run: Run) -> None:
    cfg = run.config
    assert cfg.teacher.train is not None
    model, info = train_stand_in(
        cfg.teacher.train,
        run.tokenizer,
        run.blocks["train"],
        cfg,
        out_dir=run.stage_dir("teacher"),
        metrics=run.metrics,
    )
    if dist.rank() == 0:
        write_json_atomic(run.layout.teacher_training, info)
        with atomic_directory(run.layout.teacher_model) as tmp:
            model.eval().save_pretrained(tmp)
            run.tokenizer.save_pretrained(tmp)
    dist.barrier()


def execute(run: Run) -> dict[str, Any]:
    stand_in = run.config.teacher.train is not None
    if stand_in and not (run.layout.teacher_model / "config.json").is_file():
        _train(run)
    info: dict[str, Any] = {
        "source": run.teacher_source,
        "stand_in": stand_in,
        **teacher_lib.describe(run.teacher),
    }
    if stand_in:
        info["note"] = STAND_IN_NOTE
        info["training"] = json.loads(run.layout.teacher_training.read_text())
    return info
