"""Question answering (SQuAD v1.1/v2.0) fine-tuning with distillation, as the reference does it
(METHOD.md sections 3 and 4): the teacher learns the start and end positions from the labels; a
student learns from the fine-tuned teacher's start and end logits (soft cross-entropy at a
temperature by default, ``tasks.qa.logits_loss``), its hidden states through the same configured
losses as the GLUE tasks (:func:`elm_train.training.task_distill.task_kd_loss`), and optionally the labels
(``tasks.label_weight``). Features and scores are elm-eval's (:mod:`elm_eval.qa`): the same
windows, post-processing and SQuAD metric modules elm-eval reports with, so the best-dev choice and
the reported EM/F1 are the numbers elm-eval would give for the same model.

The training rows hold the span as ``labels`` = ``[start, end]`` token positions, so the shared
batching (:mod:`elm_train.training.batches`) and loop carry them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn
from transformers import AutoModelForQuestionAnswering, PreTrainedModel, PreTrainedTokenizerBase

import elm_eval
from elm_distill import DistillationLoss, Features, FeatureTaps, get_loss
from elm_eval.qa import EvalFeatures, evaluate_qa_model
from elm_train.config import QATaskSettings, TaskStageConfig
from elm_train.training.task_distill import TaskTeacher, TaskTraining, is_elm, student_loss

MASKED = -1e4
"""Logit given to padding positions before a softmax over a window's tokens (finite in bf16)."""


def feature_config(settings: QATaskSettings) -> elm_eval.QAFeatureConfig:
    """elm-eval's window and answer settings from the tasks section's ``qa``."""
    return elm_eval.QAFeatureConfig(
        max_length=settings.max_seq_length,
        doc_stride=settings.doc_stride,
        max_query_length=settings.max_query_length,
        n_best=settings.n_best,
        max_answer_length=settings.max_answer_length,
    )


def encode_train(
    tokenizer: PreTrainedTokenizerBase, split: elm_eval.QASplit, settings: QATaskSettings
) -> datasets.Dataset:
    """Training windows of ``split`` as token ids (segment ids where the tokenizer makes them) and
    ``labels`` = [start, end] (the first token for no answer in the window)."""
    rows = elm_eval.train_features(tokenizer, split, feature_config(settings))
    columns: dict[str, Any] = {
        "input_ids": rows["input_ids"],
        "labels": [[s, e] for s, e in zip(rows["start_positions"], rows["end_positions"], strict=True)],
    }
    if "token_type_ids" in rows:
        columns["token_type_ids"] = rows["token_type_ids"]
    return datasets.Dataset.from_dict(columns)


@dataclass
class QAValidation:
    """What scoring a model on a QA validation split needs: the examples, their windows, the
    tokenizer, the settings and the metric (``squad`` or ``squad_v2``)."""

    split: elm_eval.QASplit
    features: EvalFeatures
    tokenizer: PreTrainedTokenizerBase
    config: elm_eval.QAFeatureConfig
    metric: str

    @classmethod
    def build(
        cls,
        tokenizer: PreTrainedTokenizerBase,
        split: elm_eval.QASplit,
        settings: QATaskSettings,
        metric: str,
    ) -> QAValidation:
        config = feature_config(settings)
        return cls(split, elm_eval.eval_features(tokenizer, split, config), tokenizer, config, metric)

    def __len__(self) -> int:
        return len(self.split)

    def score(self, model: nn.Module, batch_size: int = 64) -> dict[str, Any]:
        """EM/F1 (v2.0: the null threshold chosen on this split) of ``model``."""
        value, values, _ = evaluate_qa_model(
            model,
            self.tokenizer,
            self.split,
            self.metric,
            self.config,
            batch_size=batch_size,
            features=self.features,
        )
        return {"metric": self.metric, "score": value, "values": values}


def span_logits(output: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """A QA output's start and end logits as ``[B, 2, T]`` distributions' logits, padding masked."""
    logits = torch.stack([output.start_logits, output.end_logits], dim=1)
    if attention_mask is not None:
        logits = logits.masked_fill(attention_mask[:, None, :] == 0, MASKED)
    return logits


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


class QATeacher(TaskTeacher):
    """The fine-tuned QA teacher, frozen: its masked start/end logits as ``Features.logits``
    (``[B, 2, T]``), and its hidden features when tapped."""

    @torch.no_grad()
    def __call__(self, batch: dict[str, torch.Tensor]) -> Features:
        inputs = _inputs(batch)
        if next(self.model.parameters()).device != inputs["input_ids"].device:
            self.model.to(inputs["input_ids"].device)
        logits = span_logits(self.model(**inputs), inputs.get("attention_mask"))
        features = self.taps.features if self.taps is not None else Features()
        features.logits = logits
        return features


class QATaskKD(nn.Module):
    """A QA model's loss: the span cross-entropy alone without a teacher; with one,
    ``logits_weight`` x the prediction loss on start and end logits + ``label_weight`` x the span
    cross-entropy + the hidden-state terms of ``objective``."""

    def __init__(
        self, model: PreTrainedModel, settings: TaskStageConfig, objective: DistillationLoss | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.cfg = settings
        self.logits_loss = get_loss(settings.qa.logits_loss)
        self.objective = objective
        self.elm = is_elm(model)
        self.taps = FeatureTaps(model) if objective is not None and not self.elm else None

    def forward(
        self, batch: dict[str, torch.Tensor], teacher: Features | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = _inputs(batch)
        spans = batch["labels"]
        hidden = teacher is not None and self.objective is not None
        extra = {"output_hidden_states": True} if hidden and self.elm else {}
        output = self.model(**inputs, start_positions=spans[:, 0], end_positions=spans[:, 1], **extra)
        label_loss = output.loss
        logs = {"label_loss": float(label_loss.detach())}
        if teacher is None:
            return label_loss, logs
        assert teacher.logits is not None
        prediction = self.logits_loss(
            span_logits(output, inputs.get("attention_mask")),
            teacher.logits,
            None,
            **self.cfg.qa.logits_params,
        )
        return student_loss(self, prediction, label_loss, output, teacher, inputs.get("attention_mask"), logs)

    def close(self) -> None:
        if self.taps is not None:
            self.taps.remove()


class QATaskTraining(TaskTraining):
    """:class:`~elm_train.training.task_distill.TaskTraining` for a question-answering model: ``train`` from
    :func:`encode_train`, ``validation`` a :class:`QAValidation`, scored by EM/F1 (F1 picks the
    best checkpoint)."""

    def make_teacher(self, teacher: PreTrainedModel, tap: bool) -> TaskTeacher:
        return QATeacher(teacher, tap=tap)

    def make_module(
        self, model: PreTrainedModel, settings: TaskStageConfig, objective: DistillationLoss | None
    ) -> nn.Module:
        return QATaskKD(model, settings, objective)

    def score_validation(self) -> dict[str, Any]:
        assert isinstance(self.validation, QAValidation)
        return self.validation.score(self.module.model)


def qa_model(source: str | Path, seed: int) -> PreTrainedModel:
    """A question-answering model on top of the checkpoint at ``source`` (the new head seeded; a
    pooler in the checkpoint is not loaded, as the reference leaves it out for SQuAD)."""
    torch.manual_seed(seed)
    return AutoModelForQuestionAnswering.from_pretrained(str(source))
