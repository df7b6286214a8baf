"""Tasks: fine-tune the teacher (once) and every retrained student on each task, the students
with distillation from the fine-tuned teacher (:mod:`elm_train.training.task_distill`), each keeping its
best validation checkpoint; one elm-eval TaskResult per model in the run's results, and for
GLUE tasks each student's test-set predictions in the GLUE server's layout
(:mod:`elm_train.glue_submission`); MNLI's models are scored on the mismatched validation set too
(:mod:`elm_train.pipeline.mismatched`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel

import elm_eval
from elm_eval import TaskData, TaskResult, TaskSpec
from elm_train import glue_submission
from elm_train.config import TaskStageConfig
from elm_train.pipeline.mismatched import score_mismatched
from elm_train.pipeline.qa_tasks import run_qa_task
from elm_train.pipeline.sizing import (
    CHECKPOINT_BYTES_PER_PARAM,
    EXPORT_BYTES_PER_PARAM,
    KEEP_CHECKPOINTS,
    PlanContext,
    StagePlan,
    capped_rows,
    si,
    students_count,
)
from elm_train.pipeline.stage import Stage
from elm_train.pipeline.stages import retrain
from elm_train.pipeline.task_models import load_task, selected_result, train_task_model
from elm_train.runtime import distributed as dist
from elm_train.runtime.checkpoint import write_json_atomic
from elm_train.training.task_distill import task_deepspeed

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def run_task(run: Run, name: str) -> list[TaskResult]:
    if elm_eval.is_qa_task(name):  # squad, squad_v2: their own features, head and scores
        return run_qa_task(run, name)
    cfg = run.config.tasks
    plan = cfg.for_task(name)
    layout = run.layout
    spec, data, train, valid = load_task(run, name)
    ds = task_deepspeed(run.config.deepspeed, plan.batch_size, dist.world_size())
    layout.task_dir(name).mkdir(parents=True, exist_ok=True)

    def trained(
        who: str,
        source: str | Path,
        teacher: PreTrainedModel | None,
        lr: float,
        epochs: int,
        eval_every: int | None,
        seed: int | None = None,
    ) -> TaskResult:
        # the multitask stage may have fine-tuned the teacher already (the same call): then it is reused
        target = train_task_model(
            run, name, who, source, teacher, lr, epochs, eval_every, spec, train, valid, seed
        )
        _write_predictions(run, name, who, data)
        model = AutoModelForSequenceClassification.from_pretrained(str(target))
        own = {
            **_kd_settings(cfg, teacher is not None, regression=spec.task_type == "regression"),
            "max_seq_length": cfg.max_seq_length,
        }
        return selected_result(
            run,
            name,
            who,
            model,
            (name, spec.metric),
            (len(train), len(valid)),
            own,
            ds,
            lr,
            epochs,
            eval_every,
        )

    results = [trained("teacher", run.teacher_source, None, plan.teacher_lr, plan.teacher_epochs, None)]
    teacher = AutoModelForSequenceClassification.from_pretrained(
        str(layout.task_model(name, "teacher"))
    ).eval()
    test_set: glue_submission.GlueTestSet | None = None
    for student, info in retrain.students(run).items():
        results.append(trained(student, info["model_dir"], teacher, plan.lr, plan.epochs, plan.eval_every))
        if cfg.glue_submission and glue_submission.glue_task(spec) is not None:
            test_set = _submit(run, name, spec, data, student, test_set)
        for k in range(1, cfg.seeds):  # the same fine-tuning with other seeds: the spread of its score
            seed = run.config.seed + k
            again = (seed_name(student, k), info["model_dir"], teacher, plan.lr, plan.epochs, plan.eval_every)
            trained(*again, seed=seed)
    if dist.rank() == 0:
        models = {r.model: layout.task_model(name, r.model) for r in results}
        pad_id = run.tokenizer.pad_token_id or 0
        results += score_mismatched(spec, results, models, run.tokenizer, cfg.max_seq_length, pad_id)
        for result in results:
            elm_eval.write_result(result, layout.results)
    return results


def seed_name(student: str, k: int) -> str:
    """The task models of a student's ``k``-th extra fine-tuning seed (``k`` = 0: the student)."""
    return student if k == 0 else f"{student}-seed{k}"


def _write_predictions(run: Run, name: str, who: str, data: TaskData) -> None:
    """Rank 0: the selected model's validation predictions by elm-eval (once per model), with the
    score the selection recorded beside elm-eval's score of them."""
    layout = run.layout
    path = layout.task_predictions(name, who)
    if dist.rank() == 0 and not path.is_file():
        settings = elm_eval.FinetuneConfig(max_length=run.config.tasks.max_seq_length, progress=False)
        found = elm_eval.predict_task(
            str(layout.task_model(name, who)), run.tokenizer, data, settings, name=who
        )
        selected = json.loads(layout.task_selection(name, who).read_text())["best"]["score"]
        write_json_atomic(path, {**found.model_dump(mode="json"), "selection_score": selected})
    dist.barrier()


def _kd_settings(cfg: TaskStageConfig, distilled: bool, regression: bool) -> dict[str, Any]:
    if not distilled:
        return {"kd": "none"}
    hidden = {feature: f"{loss} x {weight:g}" for feature, loss, weight in cfg.hidden_terms()}
    prediction = f"mse to {cfg.regression_target}" if regression else cfg.logits_loss
    return {
        "kd": prediction,
        "kd_weight": cfg.logits_weight,
        "label_weight": cfg.label_weight,
        "hidden_kd": hidden or "none",
    }


def _submit(
    run: Run,
    name: str,
    spec: TaskSpec,
    data: TaskData,
    student: str,
    test_set: glue_submission.GlueTestSet | None,
) -> glue_submission.GlueTestSet | None:
    """Write ``student``'s GLUE files for task ``name`` (rank 0; skipped when already recorded);
    returns the task's test rows, loaded once for all students."""
    layout = run.layout
    record_path = layout.glue_submission_record(student)
    if dist.rank() == 0:
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        if name not in record:
            if test_set is None:
                test_set = glue_submission.glue_test_set(spec, data)
            assert test_set is not None  # a GLUE task
            model = AutoModelForSequenceClassification.from_pretrained(str(layout.task_model(name, student)))
            if torch.cuda.is_available():
                model.to(torch.device("cuda", torch.cuda.current_device()))
            record[name] = glue_submission.write_predictions(
                model,
                run.tokenizer,
                test_set,
                layout.glue_submission_dir(student),
                max_length=run.config.tasks.max_seq_length,
                pad_id=run.tokenizer.pad_token_id or 0,
            )
            write_json_atomic(record_path, record)
    dist.barrier()
    return test_set


def execute(run: Run) -> dict[str, Any]:
    scores: dict[str, dict[str, float]] = {}
    for name in run.config.task_names:
        for r in run_task(run, name):  # MNLI's results include its mismatched scores (mnli-mm)
            scores.setdefault(r.task, {})[r.model] = r.score
    return scores


def estimate(ctx: PlanContext, plan: StagePlan) -> None:
    cfg = ctx.config.tasks
    batch = cfg.batch_size or ctx.global_batch
    students = students_count(ctx.config) * cfg.seeds  # every fine-tuning seed trains each student again
    seeds = f" ({cfg.seeds} seeds of {students_count(ctx.config)})" if cfg.seeds > 1 else ""
    total_steps, total_tokens, unknown = 0, 0, False
    parts = []
    for name in ctx.config.task_names:
        sizes = capped_rows(ctx, name, parts)
        if sizes is None:
            unknown = True
            continue
        train, valid, how = sizes
        per_epoch = train // batch
        if cfg.optim.max_steps_per_epoch:
            per_epoch = min(per_epoch, cfg.optim.max_steps_per_epoch)
        task = cfg.for_task(name)
        teacher, student = per_epoch * int(task.teacher_epochs or 1), per_epoch * int(task.epochs or 1)
        steps = teacher + students * student
        evaluations = int(task.teacher_epochs or 1) + students * (
            math.ceil(student / task.eval_every) + 1 if task.eval_every else int(task.epochs or 1)
        )
        total_steps += steps
        length = cfg.qa.max_seq_length if elm_eval.is_qa_task(name) else cfg.max_seq_length
        total_tokens += (steps * batch + evaluations * (valid or 0)) * length
        parts.append(
            f"{name}: {train:,} training examples ({how}); steps: teacher {teacher:,}, students {students}{seeds} x {student:,}"
        )
    plan.steps = f"{total_steps:,}" + (" + unknown" if unknown else "")
    plan.tokens = None if unknown else total_tokens
    if unknown:
        plan.tokens_text = f">= {si(total_tokens)}"
    plan.notes += [f"batches of {batch} examples of at most {cfg.max_seq_length} tokens", *parts]
    models = len(ctx.config.task_names)
    teacher = ctx.teacher_params or 0
    # each model: its checkpoints, its best validation model and the final copy of it
    per_model = KEEP_CHECKPOINTS * CHECKPOINT_BYTES_PER_PARAM + 2 * EXPORT_BYTES_PER_PARAM
    plan.disk = models * per_model * (teacher + students * ctx.student_params)
    if ctx.teacher_params is None:
        plan.disk, plan.disk_text = None, f"{models} tasks x (teacher + {students} students) x 40 B/param"


STAGE = Stage(
    "tasks",
    "fine-tune teacher and students on each task",
    execute,
    reads=("data", "teacher", "retrain"),
    writes=("task_model", "task_selection", "glue_submission", "results"),
    ranks="all",
    settings=("tasks",),
    estimate=estimate,
    applies=lambda config: bool(config.task_names),
)
