"""Teacher: a checkpoint teacher is described; with ``teacher.train`` a GPT-2-style stand-in is
first trained on the corpus (see :mod:`elm_train.training.teacher_training`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from transformers import PreTrainedModel

from elm_train import teacher as teacher_lib
from elm_train.config import ConfigError
from elm_train.pipeline.sizing import PlanContext, StagePlan, add_tokens, loop_disk
from elm_train.pipeline.stage import Stage
from elm_train.runtime import distributed as dist
from elm_train.runtime.checkpoint import write_json_atomic
from elm_train.runtime.fsio import atomic_directory
from elm_train.training.kd import check_layer_maps
from elm_train.training.teacher_training import STAND_IN_NOTE, train_stand_in

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
        out_dir=run.layout.stage_dir("teacher"),
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


# --- what later stages load (through Run, which keeps one copy per process) ------------------


def source(run: Run) -> str:
    """The teacher's checkpoint: the configured one, or the stand-in this stage trained."""
    if run.config.teacher.train is None:
        assert run.config.teacher.name_or_path is not None  # the config's validator says so
        return teacher_lib.resolve(run.config.hub_source(run.config.teacher.name_or_path))
    trained = run.layout.teacher_model
    if not (trained / "config.json").is_file():
        raise ConfigError(
            f"the stand-in teacher has not been trained in {run.dir} yet; run elm-train stage teacher"
        )
    return str(trained)


def load_teacher(run: Run) -> PreTrainedModel:
    """The teacher model, checked against the run: the causal teacher's vocabulary must be the
    tokenizer's, and the layer maps must name layers it has."""
    model = teacher_lib.load_teacher(source(run), causal=run.causal)
    if run.causal and int(model.config.vocab_size) != len(run.tokenizer):
        raise ConfigError(
            f"the teacher's vocabulary has {model.config.vocab_size} entries but the tokenizer "
            f"({run.tokenizer_name}) has {len(run.tokenizer)}; logits distillation needs the same "
            "vocabulary: use tokenizer.source 'teacher'"
        )
    check_layer_maps(run.config, teacher_lib.teacher_layers(model))
    return model


def estimate(ctx: PlanContext, plan: StagePlan) -> None:
    train = ctx.config.teacher.train
    if train is None:
        plan.notes.append("loads the teacher; trains nothing")
        return
    steps, plan.steps = ctx.steps(train.optim.epochs, train.optim.max_steps_per_epoch)
    add_tokens(ctx, plan, steps)
    plan.disk = loop_disk(ctx.teacher_params or 0)


STAGE = Stage(
    "teacher",
    "load the teacher, or train a stand-in one",
    execute,
    reads=("data",),
    writes=("teacher_model", "teacher_training"),
    ranks="all",
    settings=("teacher",),
    estimate=estimate,
    loaders=(source, load_teacher),
)
