"""Retrain: the found architecture and the hand-designed baseline, extracted from the supernet
and trained by the same loop, budget and losses (:mod:`elm_train.training.retraining`); with
``retrain.enabled`` off, extracted and exported untrained (the tasks fine-tune them from there).

The students are recorded in ``retrain/students.json`` before training, so the later stages
read which models exist instead of re-deriving them; each student's result is recorded after
its model is exported, so a resumed run keeps every student's final loss.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import elm_space
from elm_space import Architecture
from elm_train.config import ConfigError
from elm_train.pipeline.cards import write_student_card
from elm_train.pipeline.sizing import (
    EXPORT_BYTES_PER_PARAM,
    PlanContext,
    StagePlan,
    add_tokens,
    loop_disk,
    students_count,
)
from elm_train.pipeline.stage import Stage
from elm_train.pipeline.stages import heads, multitask, supernet
from elm_train.runtime import distributed as dist
from elm_train.runtime.checkpoint import write_json_atomic
from elm_train.runtime.fsio import atomic_directory
from elm_train.training.loop import LoopSettings
from elm_train.training.retraining import Retraining, baseline_architecture, build_student

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def _record_students(run: Run) -> None:
    found = heads.final_architecture(run)
    init = run.config.retrain.init
    students = {"found": found}
    if run.config.baseline.enabled:
        grown = supernet.grown_space(run)
        students["baseline"] = baseline_architecture(grown, elm_space.count_params(found))
    record = {
        name: {"architecture": arch.model_dump(mode="json"), "init": init} for name, arch in students.items()
    }
    write_json_atomic(run.layout.students, {"order": list(students), "students": record})


def _retrain(run: Run, name: str, student_info: dict[str, Any]) -> dict[str, Any]:
    cfg = run.config
    arch, init = student_info["architecture"], student_info["init"]
    teacher = run.teacher_features
    student, objective = build_student(
        supernet.trained_supernet(run).model,
        arch,
        init,
        cfg.retrain.kd,
        teacher.width,
        teacher.config_layers,
        cfg.seed,
        multitask=multitask.multitask_model(run).supernet if init == "multitask" else None,
    )
    if not cfg.retrain.enabled:  # the tasks fine-tune the extracted student as it is
        return _export(run, name, student_info, student, {"steps": 0, "final_loss": None})
    trainer = Retraining(
        name,
        student,
        objective,
        teacher,
        run.blocks["train"],
        cfg.retrain,
        LoopSettings(
            cfg.deepspeed,
            cfg.seed,
            run.layout.student_dir(name),
            run.metrics,
            checkpoint_every=cfg.supernet.checkpoint_every,
        ),
        tokenizer=run.tokenizer,
    )
    history = trainer.train()
    training = {"steps": trainer.total_steps, "final_loss": history[-1][1]}
    return _export(run, name, student_info, trainer.model.student, training)


def _export(
    run: Run, name: str, student_info: dict[str, Any], student: Any, training: dict[str, Any]
) -> dict[str, Any]:
    """Save a student's model and card, then its ``result.json`` (which marks it done)."""
    arch = student_info["architecture"]
    result = {
        "architecture": arch.to_string(),
        "params": elm_space.count_params(arch),
        "init": student_info["init"],
        "route": run.config.retrain.route(),
        **training,
    }
    if dist.rank() == 0:
        with atomic_directory(student_info["model_dir"]) as tmp:
            student.save_pretrained(tmp)
            run.tokenizer.save_pretrained(tmp)
            write_student_card(run, tmp, name, arch, result)
        write_json_atomic(run.layout.student_dir(name) / "result.json", result)
    dist.barrier()
    return result


def execute(run: Run) -> dict[str, Any]:
    if dist.rank() == 0 and not run.layout.students.is_file():
        _record_students(run)
    dist.barrier()
    info: dict[str, Any] = {}
    for name, student in students(run).items():
        done = run.layout.student_dir(name) / "result.json"
        info[name] = json.loads(done.read_text()) if done.is_file() else _retrain(run, name, student)
    if "baseline" in info:
        info["baseline"]["within_budget"] = info["baseline"]["params"] <= info["found"]["params"]
    return info


# --- what later stages load -------------------------------------------------------------------


def students(run: Run) -> dict[str, dict[str, Any]]:
    """The students by name, in training order: architecture, init, model directory."""
    path = run.layout.students
    if not path.is_file():
        raise ConfigError(f"no retrained students in {run.dir} yet; run elm-train stage retrain")
    records = json.loads(path.read_text())
    return {
        name: {
            **record,
            "architecture": Architecture.model_validate(record["architecture"]),
            "model_dir": run.layout.student_model(name),
        }
        for name in records["order"]
        for record in [records["students"][name]]
    }


def estimate(ctx: PlanContext, plan: StagePlan) -> None:
    optim = ctx.config.retrain.optim
    count = students_count(ctx.config)
    if not ctx.config.retrain.enabled:  # the students are extracted and exported, not trained
        plan.steps, plan.tokens, plan.tokens_text = "-", None, "-"
        plan.disk = count * ctx.student_params * EXPORT_BYTES_PER_PARAM
        plan.notes.append(
            f"{count} students of about {ctx.student_params:,} parameters, {ctx.config.retrain.route()}"
        )
        return
    steps, text = ctx.steps(optim.epochs, optim.max_steps_per_epoch)
    plan.steps = f"{count} x {text}"
    add_tokens(ctx, plan, steps, copies=count)
    plan.disk = count * loop_disk(ctx.student_params)
    plan.notes.append(
        f"{count} students of about {ctx.student_params:,} parameters, {ctx.config.retrain.route()}"
    )


STAGE = Stage(
    "retrain",
    "retrain the found model and the baseline by distillation",
    execute,
    reads=("data", "teacher", "supernet", "multitask", "heads"),
    writes=("students", "student_model"),
    ranks="all",
    settings=("retrain", "baseline"),
    estimate=estimate,
    loaders=(students,),
)
