"""The tasks stage's section: fine-tuning the teacher and distilling each student per task, with
per-task overrides and the question-answering settings; and task names as elm-eval spells them."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, PositiveInt, field_validator, model_validator

import elm_eval
from elm_distill import LOSSES
from elm_train.config.base import Section, registered_loss
from elm_train.config.training import OptimConfig

HiddenFeature = Literal["embeddings", "attention", "layers"]


class TaskOverrides(Section):
    """What one task changes of the tasks section (``tasks.per_task.<task>``); unset fields keep
    the section's values."""

    epochs: PositiveInt | None = None
    """Student epochs (the reference trains CoLA for 50, every other GLUE task for 10)."""
    lr: float | None = Field(default=None, gt=0, le=1.0)
    """Student learning rate."""
    batch_size: PositiveInt | None = None
    eval_every: PositiveInt | None = None
    teacher_epochs: PositiveInt | None = None
    teacher_lr: float | None = Field(default=None, gt=0, le=1.0)


class QATaskSettings(Section):
    """The extractive question-answering tasks (``squad``, ``squad_v2``): windows, answers and the
    prediction loss. Token counts as transformers' ``run_qa`` (``doc_stride``: tokens two windows
    of one context share)."""

    max_seq_length: PositiveInt = 384
    doc_stride: PositiveInt = 128
    max_query_length: PositiveInt = 64
    max_answer_length: PositiveInt = 30
    n_best: PositiveInt = 20
    logits_loss: str = "soft_ce"
    """Between the student's and the teacher's start and end logits (each a distribution over the
    window's tokens); the reference: soft cross-entropy at temperature 1."""
    logits_params: dict[str, bool | int | float] = {}  # noqa: RUF012
    """Keyword parameters of ``logits_loss``, e.g. ``{temperature: 2.0}``."""

    _logits_loss_registered = field_validator("logits_loss")(registered_loss)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        try:
            LOSSES.check_params(self.logits_loss, self.logits_params)
        except ValueError as err:
            raise ValueError(f"tasks.qa.logits_params: {err}") from None
        if self.max_query_length + 4 + self.doc_stride > self.max_seq_length:
            raise ValueError(
                f"tasks.qa: max_query_length {self.max_query_length} + doc_stride {self.doc_stride} + "
                f"special tokens leave no new context in a window of max_seq_length {self.max_seq_length}"
            )
        return self


class TaskStageConfig(Section):
    """Task fine-tuning (METHOD.md section 4, step 5b): the teacher on the labels, then each student
    by distillation from it, keeping the best validation checkpoint."""

    tasks: list[str] | None = None
    """elm-eval task names; ``None``: tweet-sentiment for the masked family, none for the causal
    one (it is judged by perplexity; name tasks to fine-tune it anyway)."""
    max_train_examples: PositiveInt | None = 2000
    max_eval_examples: PositiveInt | None = 1000
    """Caps the validation split (and the test split scored beside it); GLUE submission files
    always predict the whole test split."""
    max_seq_length: PositiveInt = 64
    teacher_epochs: PositiveInt = 1
    teacher_lr: float = Field(default=5e-5, gt=0)
    optim: OptimConfig = OptimConfig(lr=1e-4, epochs=2, weight_decay=0.01)
    batch_size: PositiveInt | None = None
    """Examples per optimizer step over all processes, for the teacher and the students; split into
    micro-batches of at most ``deepspeed.micro_batch_size`` per process. ``None``: the deepspeed
    section's global batch (``deepspeed.global_batch_size``)."""
    eval_every: PositiveInt | None = None
    """Score a student on the validation split every this many optimizer steps and after the last,
    keeping its best model (the reference: 50, QQP 250); ``None``: at the end of every epoch. The
    teacher is scored at the end of every epoch and keeps its best one too."""
    per_task: dict[str, TaskOverrides] = {}  # noqa: RUF012
    """Per-task settings by elm-eval task name, e.g. ``{cola: {epochs: 50}, qqp: {eval_every: 250}}``.
    A task listed here but not run is ignored, so a preset's table survives a shorter task list."""
    label_weight: float = Field(default=1.0, ge=0)
    """The students' loss on the gold labels next to distillation (cross-entropy; MSE for a
    regression task). The teacher always learns from the labels alone. The reference's students
    learn from the teacher alone (0; STS-B through ``regression_target: gold``)."""
    logits_loss: str = "dist"
    """A loss of elm-distill's registry between the student's and the fine-tuned teacher's task
    logits: ``dist`` (the relational DIST loss), ``soft_ce`` (the EfficientBERT baseline), ``kl``,
    or a plugin's. Regression tasks use ``regression_target`` whatever this says."""
    logits_params: dict[str, bool | int | float] = {}  # noqa: RUF012
    """Keyword parameters of ``logits_loss`` (DIST: temperature, beta, gamma; soft_ce:
    temperature, t_squared); unset ones keep the loss's defaults (all 1 for DIST)."""
    logits_weight: float = Field(default=1.0, ge=0)
    regression_target: Literal["teacher", "gold"] = "teacher"
    """What the prediction loss of a regression task (STS-B), weighted by ``logits_weight``, is the
    MSE to: the fine-tuned teacher's output (distillation, as logits KD is for classes) or the gold
    score (the reference's choice). ``label_weight`` adds MSE to the gold score on top."""
    hidden_loss: str | dict[HiddenFeature, str] = "pearson"
    """elm-distill loss for the hidden-state terms (student features through learned projections
    to the teacher's width): one name for all, or one per feature, e.g. the reference's
    ``{embeddings: pearson, attention: mse, layers: mse}``."""
    embedding_weight: float = Field(default=1.0, ge=0)
    attention_weight: float = Field(default=0.0, ge=0)
    """Attention-sublayer outputs (after their residual and norm), one projection per attention
    width (MobileBERT blocks attend in their bottleneck)."""
    layer_weight: float = Field(default=1.0, ge=0)
    """Layer outputs; all three hidden weights 0 turn hidden-state distillation off."""
    layer_map: Literal["last", "first"] | list[int] = "last"
    """Teacher layer for each student layer: last or first of each group, or an explicit list."""
    glue_submission: bool = True
    """For GLUE tasks, write each student's test-set predictions in the GLUE server's layout."""
    qa: QATaskSettings = QATaskSettings()
    """Settings of the question-answering tasks (``squad``, ``squad_v2``); ``max_seq_length`` above
    is the classification tasks'."""
    seeds: PositiveInt = 1
    """Fine-tune each student this many times, with seeds ``seed``, ``seed + 1``, ...; the report
    gives each model's mean score and spread over them (the teacher is fine-tuned once). The
    first seed's models are the run's results."""

    _logits_loss_registered = field_validator("logits_loss")(registered_loss)

    @field_validator("hidden_loss")
    @classmethod
    def _hidden_losses_registered(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        for name in [value] if isinstance(value, str) else value.values():
            registered_loss(name)
        return value

    @model_validator(mode="after")
    def _logits_params_known(self) -> Self:
        try:
            LOSSES.check_params(self.logits_loss, self.logits_params)
        except ValueError as err:
            raise ValueError(f"tasks.logits_params: {err}") from None
        return self

    @model_validator(mode="after")
    def _heads_learn(self) -> Self:
        if self.label_weight == 0 and self.logits_weight == 0:
            raise ValueError(
                "tasks.label_weight and tasks.logits_weight are both 0, so nothing would train the "
                "students' classifier heads; set one of them above 0"
            )
        return self

    @model_validator(mode="after")
    def _hidden_loss_per_feature(self) -> Self:
        if isinstance(self.hidden_loss, dict):
            weights = {"embeddings": self.embedding_weight, "attention": self.attention_weight}
            weights["layers"] = self.layer_weight
            missing = [f for f, w in weights.items() if w > 0 and f not in self.hidden_loss]
            if missing:
                raise ValueError(
                    f"tasks.hidden_loss names no loss for {missing}, whose weights are not 0; "
                    "name one, or set their weights to 0"
                )
        return self

    @field_validator("per_task")
    @classmethod
    def _per_task_known(cls, value: dict[str, TaskOverrides]) -> dict[str, TaskOverrides]:
        seen: dict[str, str] = {}
        for key in value:
            try:
                canonical = canonical_task(key)
            except elm_eval.ElmEvalError as err:
                raise ValueError(str(err)) from None
            if canonical in seen:
                raise ValueError(f"task {canonical!r} is listed twice ({seen[canonical]!r}, {key!r})")
            seen[canonical] = key
        return value

    def hidden_terms(self) -> list[tuple[HiddenFeature, str, float]]:
        """(feature, loss, weight) of each distilled hidden feature; empty when hidden KD is off."""
        weights: dict[HiddenFeature, float] = {
            "embeddings": self.embedding_weight,
            "attention": self.attention_weight,
            "layers": self.layer_weight,
        }
        return [
            (feature, self.hidden_loss if isinstance(self.hidden_loss, str) else self.hidden_loss[feature], w)
            for feature, w in weights.items()
            if w > 0
        ]

    def for_task(self, name: str) -> TaskOverrides:
        """This section's settings for task ``name``, its ``per_task`` entry laid over them (every
        field set except ``batch_size`` and ``eval_every``, whose ``None`` keeps its meaning)."""
        resolved = TaskOverrides(
            epochs=self.optim.epochs,
            lr=self.optim.lr,
            batch_size=self.batch_size,
            eval_every=self.eval_every,
            teacher_epochs=self.teacher_epochs,
            teacher_lr=self.teacher_lr,
        )
        for key, override in self.per_task.items():
            if task_key(key) == task_key(name):
                return resolved.model_copy(update=override.model_dump(exclude_none=True))
        return resolved


def canonical_task(name: str) -> str:
    """elm-eval's name of a task, a question-answering one (``squad``, ``squad_v2``) included."""
    if elm_eval.is_qa_task(name):
        return elm_eval.get_qa_task(name).name
    return elm_eval.get_task(name).name


def task_key(name: str) -> str:
    """elm-eval's name of a task (``SST-2`` and ``sst_2`` are ``sst2``); other names lower-cased."""
    try:
        return canonical_task(name)
    except elm_eval.ElmEvalError:
        return name.lower()
