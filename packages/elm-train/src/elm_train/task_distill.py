"""Task fine-tuning with distillation from a fine-tuned teacher (METHOD.md section 4, step 5b).

A classifier learns from the labels and, when the teacher's logits are given, from them through
a registered logits loss (DIST by default, the relational one); regression heads match the
teacher's value by MSE. Scores use elm-eval's metric modules, so they are the numbers elm-eval
would report for the same predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

import elm_eval
from elm_distill import get_loss, logits_mse
from elm_eval import TaskData, TaskSpec
from elm_train import batches
from elm_train.config import DeepSpeedConfig, OptimConfig, TaskStageConfig
from elm_train.loop import TrainLoop
from elm_train.metrics import MetricsSink, NullMetrics


def task_spec(name: str, settings: TaskStageConfig) -> TaskSpec:
    """elm-eval's task, with the example caps of ``settings``."""
    spec = elm_eval.get_task(name)
    return spec.model_copy(
        update={
            "max_train_examples": settings.max_train_examples,
            "max_validation_examples": settings.max_eval_examples,
            "max_test_examples": settings.max_eval_examples,
        }
    )


def encode(
    tokenizer: PreTrainedTokenizerBase, data: TaskData, split: str, max_length: int
) -> datasets.Dataset:
    """One split of a task as token ids (and segment ids where the tokenizer makes them) with labels."""
    part = getattr(data, split)
    args = (part.text_a,) if part.text_b is None else (part.text_a, part.text_b)
    enc = tokenizer(*args, truncation=True, max_length=max_length)
    columns: dict[str, Any] = {"input_ids": enc["input_ids"], "labels": list(part.labels)}
    if "token_type_ids" in enc:
        columns["token_type_ids"] = enc["token_type_ids"]
    return datasets.Dataset.from_dict(columns)


class TaskKD(nn.Module):
    """A classifier trained on labels and, when a teacher's logits are given, on a logits loss."""

    def __init__(self, model: PreTrainedModel, regression: bool, settings: TaskStageConfig) -> None:
        super().__init__()
        self.model = model
        self.regression = regression
        self.cfg = settings
        self.logits_loss = get_loss(settings.logits_loss)

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
        if self.regression:  # a class-relation loss needs classes; regression matches the value
            kd = logits_mse(logits, teacher_logits)
        else:
            kd = self.logits_loss(logits, teacher_logits, None, **self.cfg.logits_params)
        logs["kd_loss"] = float(kd.detach())
        return self.cfg.label_weight * label_loss + kd, logs


class TaskTraining(TrainLoop):
    """Fine-tuning of one classifier on one task; ``train()`` runs it."""

    def __init__(
        self,
        name: str,
        model: PreTrainedModel,
        teacher: PreTrainedModel | None,
        train: datasets.Dataset,
        regression: bool,
        settings: TaskStageConfig,
        optim: OptimConfig,
        deepspeed: DeepSpeedConfig,
        *,
        seed: int,
        out_dir: Path,
        pad_id: int,
        metrics: MetricsSink | None = None,
        checkpoint_every: int = 50,
    ) -> None:
        self.stage = f"tasks.{name}"
        self.module = TaskKD(model, regression, settings)
        super().__init__(
            self.module,
            train,
            deepspeed,
            optim,
            seed,
            out_dir,
            metrics or NullMetrics(),
            checkpoint_every,
            pad_id,
        )
        self.teacher = teacher.to(self.engine.device) if teacher is not None else None

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


def classifier(source: str | Path, spec: TaskSpec, seed: int) -> PreTrainedModel:
    """A sequence classifier for ``spec`` on top of the checkpoint at ``source`` (head seeded)."""
    torch.manual_seed(seed)
    problem = "regression" if spec.task_type == "regression" else "single_label_classification"
    return AutoModelForSequenceClassification.from_pretrained(
        str(source), num_labels=spec.num_labels, problem_type=problem
    )
