"""Tasks: fine-tune the teacher (once) and every retrained student on each task, the students
with distillation from the fine-tuned teacher (:mod:`elm_train.task_distill`); one elm-eval
TaskResult per model in the run's results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import AutoModelForSequenceClassification, PreTrainedModel

import elm_eval
from elm_eval import TaskResult
from elm_train import distributed as dist
from elm_train.checkpoint import write_json_atomic
from elm_train.fsio import atomic_directory
from elm_train.task_distill import TaskTraining, classifier, encode, score, task_spec

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def run_task(run: Run, name: str) -> list[TaskResult]:
    cfg = run.config.tasks
    layout = run.layout
    spec = task_spec(name, cfg)
    data = elm_eval.load_task_data(spec)
    train = encode(run.tokenizer, data, "train", cfg.max_seq_length)
    valid = encode(run.tokenizer, data, "validation", cfg.max_seq_length)
    regression = spec.task_type == "regression"
    pad = run.tokenizer.pad_token_id or 0
    layout.task_dir(name).mkdir(parents=True, exist_ok=True)

    def trained(
        who: str, source: str | Path, teacher: PreTrainedModel | None, lr: float, epochs: int
    ) -> TaskResult:
        target = layout.task_model(name, who)
        if not (target / "config.json").is_file():
            model = classifier(source, spec, run.config.seed)
            history = TaskTraining(
                f"{name}.{who}",
                model,
                teacher,
                train,
                regression,
                cfg,
                cfg.optim.model_copy(update={"lr": lr, "epochs": epochs}),
                run.config.deepspeed,
                seed=run.config.seed,
                out_dir=layout.task_training(name, who),
                pad_id=pad,
                metrics=run.metrics,
                checkpoint_every=run.config.supernet.checkpoint_every,
            ).train()
            if dist.rank() == 0:
                write_json_atomic(layout.task_loss_curve(name, who), [loss for _, loss in history])
                with atomic_directory(target) as tmp:
                    model.save_pretrained(tmp)
            dist.barrier()
        model = AutoModelForSequenceClassification.from_pretrained(str(target))
        scored = score(model, valid, spec, pad)
        return TaskResult(
            model=who,
            task=name,
            metric=spec.metric,
            score=scored["score"],
            validation_metrics=scored["values"],
            num_parameters=sum(p.numel() for p in model.parameters()),
            num_train_examples=len(train),
            num_validation_examples=len(valid),
            train_loss_curve=json.loads(layout.task_loss_curve(name, who).read_text()),
            settings={
                "kd": "none" if teacher is None else cfg.logits_loss,
                "max_seq_length": cfg.max_seq_length,
            },
        )

    results = [trained("teacher", run.teacher_source, None, cfg.teacher_lr, cfg.teacher_epochs)]
    teacher = AutoModelForSequenceClassification.from_pretrained(
        str(layout.task_model(name, "teacher"))
    ).eval()
    for student, info in run.students().items():
        results.append(trained(student, info["model_dir"], teacher, cfg.optim.lr, cfg.optim.epochs))
    if dist.rank() == 0:
        for result in results:
            elm_eval.write_result(result, layout.results)
    return results


def execute(run: Run) -> dict[str, Any]:
    return {name: {r.model: r.score for r in run_task(run, name)} for name in run.config.task_names}
