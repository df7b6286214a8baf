"""Stage 6b: per-task fine-tuning with distillation (METHOD.md section 4, step 5b).

The teacher is fine-tuned on the task first when it has no task head (the built-in MiniLM has
none). Each retrained student then learns from the labels and from the fine-tuned teacher's
logits through DIST, the relational logits loss. Scores use elm-eval's metric modules, so they
are the numbers elm-eval would report for the same predictions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel

import elm_eval
from elm_distill import dist_loss, logits_mse
from elm_eval import TaskData, TaskResult, TaskSpec
from elm_train import batches
from elm_train.checkpoint import write_json_atomic
from elm_train.config import TaskStageConfig
from elm_train.loop import TrainLoop
from elm_train.run import Run
from elm_train.stages import retrain as retrain_stage

STAGE = "tasks"
RESULTS = "results"
"""Where every stage writes its elm-eval result files, which the report reads."""


def task_spec(name: str, cfg: TaskStageConfig) -> TaskSpec:
    spec = elm_eval.get_task(name)
    return spec.model_copy(
        update={
            "max_train_examples": cfg.max_train_examples,
            "max_validation_examples": cfg.max_eval_examples,
            "max_test_examples": cfg.max_eval_examples,
        }
    )


def encode(run: Run, data: TaskData, split: str, max_length: int) -> datasets.Dataset:
    part = getattr(data, split)
    args = (part.text_a,) if part.text_b is None else (part.text_a, part.text_b)
    enc = run.tokenizer(*args, truncation=True, max_length=max_length)
    columns: dict[str, Any] = {"input_ids": enc["input_ids"], "labels": list(part.labels)}
    if "token_type_ids" in enc:
        columns["token_type_ids"] = enc["token_type_ids"]
    return datasets.Dataset.from_dict(columns)


class TaskKD(nn.Module):
    """A classifier trained on labels and, when a teacher's logits are given, on DIST to them."""

    def __init__(self, model: PreTrainedModel, regression: bool, cfg: TaskStageConfig) -> None:
        super().__init__()
        self.model = model
        self.regression = regression
        self.cfg = cfg

    def forward(
        self, batch: dict[str, torch.Tensor], teacher_logits: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = self.model(**inputs).logits
        labels = batch["labels"]
        if self.regression:
            label_loss = nn.functional.mse_loss(logits.squeeze(-1), labels.float())
        else:
            label_loss = nn.functional.cross_entropy(logits, labels.long())
        logs = {"label_loss": float(label_loss.detach())}
        if teacher_logits is None:
            return label_loss, logs
        if self.regression:  # DIST needs classes; regression heads match the teacher's value
            kd = logits_mse(logits, teacher_logits)
        else:
            kd = dist_loss(
                logits,
                teacher_logits,
                temperature=self.cfg.dist_tau,
                beta=self.cfg.dist_beta,
                gamma=self.cfg.dist_gamma,
            )
        logs["kd_loss"] = float(kd.detach())
        return self.cfg.label_weight * label_loss + kd, logs


class TaskTraining(TrainLoop):
    def __init__(
        self,
        run: Run,
        name: str,
        model: PreTrainedModel,
        teacher: PreTrainedModel | None,
        train: datasets.Dataset,
        regression: bool,
        lr: float,
        epochs: int,
        out_dir: Path,
    ) -> None:
        cfg = run.config
        self.stage = f"{STAGE}.{name}"
        self.teacher = teacher
        optim = cfg.tasks.optim.model_copy(update={"lr": lr, "epochs": epochs})
        self.module = TaskKD(model, regression, cfg.tasks)
        pad = run.tokenizer.pad_token_id or 0
        super().__init__(
            self.module,
            train,
            cfg.deepspeed,
            optim,
            cfg.seed,
            out_dir,
            run.metrics,
            cfg.supernet.checkpoint_every,
            pad,
        )

    def micro_loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        teacher_logits = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(**{k: v for k, v in batch.items() if k != "labels"}).logits
        return self.engine(batch, teacher_logits)


@torch.no_grad()
def score(
    model: PreTrainedModel, data: datasets.Dataset, spec: TaskSpec, pad_id: int, batch_size: int = 64
) -> dict[str, Any]:
    """Predict a split and score it with the task's elm-eval metric."""
    was_training = model.training
    model.eval()
    predictions: list[float] = []
    for batch in batches.eval_batches(data, batch_size, None, pad_id):
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        predictions.extend(
            logits.squeeze(-1).tolist() if spec.task_type == "regression" else logits.argmax(-1).tolist()
        )
    model.train(was_training)
    value, values = elm_eval.compute_metric(spec.metric, predictions, list(data["labels"]))
    return {"metric": spec.metric, "score": value, "values": values}


def _classifier(source: str | Path, spec: TaskSpec, seed: int) -> PreTrainedModel:
    torch.manual_seed(seed)
    problem = "regression" if spec.task_type == "regression" else "single_label_classification"
    return AutoModelForSequenceClassification.from_pretrained(
        str(source), num_labels=spec.num_labels, problem_type=problem
    )


def run_task(run: Run, name: str) -> list[TaskResult]:
    """Fine-tune the teacher (once) and every student on one task; one elm-eval TaskResult each."""
    cfg = run.config.tasks
    out = run.stage_dir(STAGE) / name
    spec = task_spec(name, cfg)
    data = elm_eval.load_task_data(spec)
    train = encode(run, data, "train", cfg.max_seq_length)
    valid = encode(run, data, "validation", cfg.max_seq_length)
    regression = spec.task_type == "regression"
    pad = run.tokenizer.pad_token_id or 0

    def trained(
        who: str, source: str | Path, teacher: PreTrainedModel | None, lr: float, epochs: int
    ) -> TaskResult:
        target = out / who
        if not (target / "config.json").is_file():
            model = _classifier(source, spec, run.config.seed)
            history = TaskTraining(
                run, f"{name}.{who}", model, teacher, train, regression, lr, epochs, out / f"{who}-train"
            ).run()
            model.save_pretrained(target)
            write_json_atomic(out / f"{who}-loss.json", [loss for _, loss in history])
        model = AutoModelForSequenceClassification.from_pretrained(str(target))
        scored = score(model, valid, spec, pad)
        curve = json.loads((out / f"{who}-loss.json").read_text())
        return TaskResult(
            model=who,
            task=name,
            metric=spec.metric,
            score=scored["score"],
            validation_metrics=scored["values"],
            num_parameters=sum(p.numel() for p in model.parameters()),
            num_train_examples=len(train),
            num_validation_examples=len(valid),
            train_loss_curve=curve,
            settings={"kd": "none" if teacher is None else "dist", "max_seq_length": cfg.max_seq_length},
        )

    results = [trained("teacher", run.teacher_source, None, cfg.teacher_lr, cfg.teacher_epochs)]
    teacher = AutoModelForSequenceClassification.from_pretrained(str(out / "teacher")).eval()
    for student in retrain_stage.students(run):
        results.append(
            trained(student, retrain_stage.model_dir(run, student), teacher, cfg.optim.lr, cfg.optim.epochs)
        )
    for result in results:
        elm_eval.write_result(result, run.stage_dir(RESULTS))
    return results


def run_stage(run: Run) -> dict[str, Any]:
    info = {name: {r.model: r.score for r in run_task(run, name)} for name in run.config.task_names}
    run.mark_done(STAGE, info)
    return info
