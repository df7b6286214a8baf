"""Task fine-tuning with distillation from a fine-tuned teacher (METHOD.md section 4, step 5b).

A student learns from the fine-tuned teacher's hidden states (embedding output, attention-sublayer
and layer outputs, lifted to the teacher's width by learned projections that train with it), from
its logits (DIST by default, the relational loss; soft cross-entropy is the EfficientBERT
baseline) and, optionally, from the gold labels. A regression task (STS-B) matches a value by MSE:
the teacher's, or the gold score as the reference does. The validation split is scored every N
steps and the best model is kept, so a resumed run keeps its best-so-far too. Scores use
elm-eval's metric modules, so they are the numbers elm-eval would report for the same predictions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import datasets
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

import elm_eval
from elm_distill import DistillationLoss, Features, FeatureTaps, get_loss, logits_mse
from elm_eval import TaskData, TaskSpec, TaskSplit
from elm_space import Architecture
from elm_train.config import DeepSpeedConfig, OptimConfig, TaskStageConfig
from elm_train.runtime import distributed as dist
from elm_train.runtime.fsio import atomic_directory
from elm_train.runtime.monitor import engine_write
from elm_train.teacher import teacher_width
from elm_train.training import batches
from elm_train.training.engine import mixed_precision_masters
from elm_train.training.global_batch import split_batch
from elm_train.training.kd import student_features, teacher_layers_for
from elm_train.training.loop import LoopSettings, TrainLoop

EVAL_BATCH_SIZE = 64


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
    """One split of a task as token ids (and segment ids where the tokenizer makes them), with the
    labels unless the split hides them (a GLUE test split)."""
    return encode_split(tokenizer, getattr(data, split), max_length)


def encode_split(tokenizer: PreTrainedTokenizerBase, part: TaskSplit, max_length: int) -> datasets.Dataset:
    """:func:`encode` for one :class:`elm_eval.TaskSplit`."""
    args = (part.text_a,) if part.text_b is None else (part.text_a, part.text_b)
    enc = tokenizer(*args, truncation=True, max_length=max_length)
    columns: dict[str, Any] = {"input_ids": enc["input_ids"]}
    if part.labels is not None:
        columns["labels"] = list(part.labels)
    if "token_type_ids" in enc:
        columns["token_type_ids"] = enc["token_type_ids"]
    return datasets.Dataset.from_dict(columns)


def task_deepspeed(
    ds: DeepSpeedConfig, batch_size: int | None, world_size: int, field: str = "tasks.batch_size"
) -> DeepSpeedConfig:
    """``ds`` with ``batch_size`` examples per optimizer step over ``world_size`` processes (``None``:
    the deepspeed section's global batch), split as every stage splits its global batch
    (:func:`elm_train.training.global_batch.split_batch`)."""
    return split_batch(ds, world_size, batch_size, field)


# --- features -----------------------------------------------------------------------------------


def is_elm(model: nn.Module) -> bool:
    """An ELM model, whose outputs carry the attention-sublayer outputs distillation compares."""
    return getattr(getattr(model, "config", None), "model_type", None) == "elm"


def _model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


class TaskTeacher:
    """A fine-tuned task teacher, frozen: its logits for a batch and, when tapped, the hidden
    features (embedding, attention-sublayer and layer outputs) from Hugging Face forward hooks.

    :meth:`close` takes the hooks off again: one teacher serves every student of a task.
    """

    def __init__(self, model: PreTrainedModel, tap: bool) -> None:
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.taps = FeatureTaps(model, detach=True) if tap else None

    @property
    def width(self) -> int:
        return teacher_width(self.model)

    @property
    def num_layers(self) -> int:
        if self.taps is None:
            raise ValueError("the teacher is not tapped, so it has no layer features")
        return self.taps.num_layers

    @torch.no_grad()
    def __call__(self, batch: dict[str, torch.Tensor]) -> Features:
        inputs = _model_inputs(batch)
        if next(self.model.parameters()).device != inputs["input_ids"].device:  # follow the student
            self.model.to(inputs["input_ids"].device)
        logits = self.model(**inputs).logits
        features = self.taps.features if self.taps is not None else Features()
        features.logits = logits
        return features

    def close(self) -> None:
        if self.taps is not None:
            self.taps.remove()


def student_widths(model: PreTrainedModel) -> tuple[int, list[int]]:
    """A student's hidden width and the widths its attention-sublayer outputs come in (ELM's
    MobileBERT blocks attend in their bottleneck; other models at the hidden width)."""
    hidden = int(model.config.hidden_size)
    if is_elm(model):
        arch = Architecture.model_validate(model.config.architecture)
        return hidden, sorted({layer.attention_width(hidden) for layer in arch.layers})
    return hidden, [hidden]


def task_kd_loss(
    settings: TaskStageConfig, student: PreTrainedModel, teacher_width: int, teacher_layers: int
) -> DistillationLoss | None:
    """The hidden-state terms of ``settings`` between ``student`` and a teacher of the given width
    and depth; None when every hidden weight is 0. Student layer l learns from teacher layer
    ``teacher_layers_for(...)[l]`` (``last``: (l + 1) * r, METHOD.md section 3)."""
    terms = [
        {
            "loss": loss,
            "features": feature,
            "weight": weight,
            "projection": "attention" if feature == "attention" else "hidden",
        }
        for feature, loss, weight in settings.hidden_terms()
    ]
    if not terms:
        return None
    hidden, attention = student_widths(student)
    layers = teacher_layers_for(
        int(student.config.num_hidden_layers), teacher_layers, settings.layer_map, "tasks.layer_map"
    )
    projections = {"hidden": {"student_widths": [hidden], "teacher_width": teacher_width}}
    if any(term["features"] == "attention" for term in terms):
        projections["attention"] = {"student_widths": attention, "teacher_width": teacher_width}
    return DistillationLoss(
        {
            "terms": terms,
            "layer_map": {"kind": "explicit", "teacher_layers": layers},
            "projections": projections,
        }
    )


# --- the loss -----------------------------------------------------------------------------------


def student_loss(
    kd: Any,
    prediction: torch.Tensor,
    label_loss: torch.Tensor,
    output: Any,
    teacher: Features,
    attention_mask: torch.Tensor | None,
    logs: dict[str, float],
) -> tuple[torch.Tensor, dict[str, float]]:
    """What every task's student learns from, classification and QA alike: ``logits_weight`` x
    the prediction loss + ``label_weight`` x the label loss + the hidden-state terms of
    ``kd.objective`` (a TaskKD or QATaskKD: through the student's own outputs, or its taps for a
    non-ELM model)."""
    logs["kd_loss"] = float(prediction.detach())
    total = kd.cfg.logits_weight * prediction
    if kd.cfg.label_weight > 0:
        total = total + kd.cfg.label_weight * label_loss
    if kd.objective is not None:
        features = student_features(output) if kd.elm else kd.taps.features
        distilled = kd.objective(features, teacher, attention_mask)
        total = total + distilled.total
        logs["hidden_loss"] = float(distilled.total.detach())
        logs.update({f"hidden.{k}": float(v) for k, v in distilled.terms.items()})
    return total, logs


class TaskKD(nn.Module):
    """A task model's loss: on the labels alone without a teacher (the teacher's own fine-tuning);
    with one, ``label_weight`` x the label loss + ``logits_weight`` x the prediction loss + the
    hidden-state terms of ``objective``.

    The prediction loss is ``settings.logits_loss`` (DIST, soft cross-entropy, ...) between the
    student's and the teacher's logits; for a regression task it is MSE to the teacher's value or
    to the gold score (``settings.regression_target``). ``objective`` (with its projections) is a
    submodule, so whatever trains this module trains the projections too.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        regression: bool,
        settings: TaskStageConfig,
        objective: DistillationLoss | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.regression = regression
        self.cfg = settings
        self.logits_loss = get_loss(settings.logits_loss)
        self.objective = objective
        self.elm = is_elm(model)
        self.taps = FeatureTaps(model) if objective is not None and not self.elm else None

    def label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return logits_mse(logits.squeeze(-1), labels.to(logits.dtype))
        return nn.functional.cross_entropy(logits, labels.long())

    def prediction_loss(
        self, logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        if not self.regression:
            return self.logits_loss(logits, teacher_logits, None, **self.cfg.logits_params)
        target = labels if self.cfg.regression_target == "gold" else teacher_logits.squeeze(-1)
        return logits_mse(logits.squeeze(-1), target.to(logits.dtype))

    def forward(
        self, batch: dict[str, torch.Tensor], teacher: Features | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = _model_inputs(batch)
        hidden = teacher is not None and self.objective is not None
        output = (
            self.model(**inputs, output_hidden_states=True) if hidden and self.elm else self.model(**inputs)
        )
        logits, labels = output.logits, batch["labels"]
        label_loss = self.label_loss(logits, labels)
        logs = {"label_loss": float(label_loss.detach())}
        if teacher is None:
            return label_loss, logs
        assert teacher.logits is not None  # TaskTeacher always sets them
        prediction = self.prediction_loss(logits, teacher.logits, labels)
        return student_loss(self, prediction, label_loss, output, teacher, batch.get("attention_mask"), logs)

    def close(self) -> None:
        if self.taps is not None:
            self.taps.remove()


# --- scoring --------------------------------------------------------------------------------------


@torch.no_grad()
def predict(
    model: PreTrainedModel,
    data: datasets.Dataset,
    regression: bool,
    pad_id: int,
    batch_size: int = EVAL_BATCH_SIZE,
) -> list[int] | list[float]:
    """Class ids (or values, for regression) for every row of ``data``, in order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictions: list[Any] = []
    for batch in batches.eval_batches(data, batch_size, None, pad_id):
        logits = model(**{k: v.to(device) for k, v in _model_inputs(batch).items()}).logits
        predictions.extend(logits.squeeze(-1).tolist() if regression else logits.argmax(-1).tolist())
    model.train(was_training)
    return predictions


def score(
    model: PreTrainedModel,
    data: datasets.Dataset,
    spec: TaskSpec,
    pad_id: int,
    batch_size: int = EVAL_BATCH_SIZE,
) -> dict[str, Any]:
    """Predict a split and score it with the task's elm-eval metric."""
    predictions = predict(model, data, spec.task_type == "regression", pad_id, batch_size)
    value, values = elm_eval.compute_metric(spec.metric, predictions, list(data["labels"]))
    return {"metric": spec.metric, "score": value, "values": values}


def better(score: float, best: float | None) -> bool:
    """Whether ``score`` beats ``best`` (every elm-eval task metric is higher-is-better); a NaN
    score (a constant prediction's correlation) beats nothing, and ties keep the earlier model."""
    if best is None:
        return True
    if math.isnan(score):
        return False
    return math.isnan(best) or score > best


# --- the training loop ----------------------------------------------------------------------------


class TaskTraining(TrainLoop):
    """Fine-tuning of one classifier on one task; ``train()`` runs it.

    Without ``teacher`` the model learns from the labels (the teacher's own fine-tuning); with one,
    by :class:`TaskKD`. With ``validation``, the model is scored every ``eval_every`` optimizer
    steps (``None``: at each epoch's end) and after the last, and the best one so far is saved to
    ``best_dir`` (``out_dir/best`` by default; rank 0 writes it atomically, the other ranks wait):
    :attr:`best` and :attr:`evaluations` say which and how it scored. Both are part of the
    checkpoints, so a resumed run keeps its best-so-far; it replays the evaluations after its last
    checkpoint exactly (they are deterministic), which rewrites ``best_dir`` as they did.
    """

    def __init__(
        self,
        name: str,
        model: PreTrainedModel,
        teacher: PreTrainedModel | None,
        train: datasets.Dataset,
        spec: TaskSpec,
        settings: TaskStageConfig,
        optim: OptimConfig,
        loop: LoopSettings,
        *,
        validation: datasets.Dataset | None = None,
        eval_every: int | None = None,
        best_dir: Path | None = None,
    ) -> None:
        self.stage = f"tasks.{name}"
        self.spec = spec
        hidden = teacher is not None and bool(settings.hidden_terms())
        self.teacher = self.make_teacher(teacher, hidden) if teacher is not None else None
        objective = None
        if hidden:
            assert self.teacher is not None
            objective = task_kd_loss(settings, model, self.teacher.width, self.teacher.num_layers)
        self.module = self.make_module(model, settings, objective)
        super().__init__(self.module, train, optim, loop)
        self.validation = validation
        self.eval_interval = eval_every or self.per_epoch
        self.best_dir = best_dir if best_dir is not None else loop.out_dir / "best"
        self.evaluations: list[dict[str, Any]] = []
        """Every evaluation so far: ``{"step": optimizer steps done, "score": ..., "values": {...}}``."""
        self.best: dict[str, Any] | None = None
        """The best evaluation so far (its model is in ``best_dir``)."""

    def make_teacher(self, teacher: PreTrainedModel, tap: bool) -> TaskTeacher:
        """The frozen teacher's wrapper (a subclass for another kind of head overrides this)."""
        return TaskTeacher(teacher, tap=tap)

    def make_module(
        self, model: PreTrainedModel, settings: TaskStageConfig, objective: DistillationLoss | None
    ) -> nn.Module:
        """The module the engine trains: the model and its loss."""
        return TaskKD(model, self.spec.task_type == "regression", settings, objective)

    def score_validation(self) -> dict[str, Any]:
        """``{"score": ..., "values": {...}}`` of the model on the validation split."""
        assert self.validation is not None
        return score(self.module.model, self.validation, self.spec, self.pad_id)

    def micro_loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.engine(batch, self.teacher(batch) if self.teacher is not None else None)

    # --- evaluation and the best model ------------------------------------------------------------
    def begin_step(self, step: int) -> None:
        # the model after ``step`` optimizer steps; evaluated before step ``step`` trains (the loop
        # has no hook after a step), which is the same model
        if self.validation is not None and step > 0 and step % self.eval_interval == 0:
            self.evaluate(step)

    def evaluate(self, steps_done: int) -> dict[str, Any]:
        """Score the model on the validation split; save it to ``best_dir`` if it is the best yet."""
        assert self.validation is not None
        result = self.score_validation()  # every rank (ZeRO-3)
        # rank 0's numbers on every rank: kernels may differ in the last bit, the choice must not
        record = dist.broadcast_object(
            {"step": steps_done, "score": result["score"], "values": result["values"]}
        )
        self.evaluations = [e for e in self.evaluations if e["step"] != steps_done] + [record]
        if better(record["score"], None if self.best is None else self.best["score"]):
            self.best = record
            if dist.rank() == 0:
                with atomic_directory(self.best_dir) as tmp:
                    self.module.model.save_pretrained(tmp, state_dict=self.full_precision_state())
        dist.barrier()
        assert self.best is not None
        self.metrics.log(
            self.stage,
            event="evaluation",
            step=steps_done,
            score=record["score"],
            best_step=self.best["step"],
            best_score=self.best["score"],
        )
        engine_write(self.engine, [(f"{self.stage}/dev_score", record["score"], steps_done)])
        return record

    def full_precision_state(self) -> dict[str, torch.Tensor] | None:
        """The model's weights in fp32 during a bf16/fp16 run (the optimizer's master copies, as
        the loop exports at the end), without touching the module; None when it is fp32 already."""
        model = self.module.model
        params = dict(model.named_parameters())
        if any(hasattr(p, "ds_id") for p in params.values()):  # ZeRO-3 partitions: DeepSpeed's
            return None
        if all(p.dtype == torch.float32 for p in params.values()):
            return None
        from deepspeed.utils import safe_get_full_fp32_param

        masters = mixed_precision_masters(self.optimizer)
        state = {k: (v.float() if v.is_floating_point() else v).cpu() for k, v in model.state_dict().items()}
        for name, p in params.items():
            master = masters.get(id(p))
            if master is None:
                master = safe_get_full_fp32_param(p)
            if master is not None:
                state[name] = master.detach().float().view_as(p).cpu()
        return state

    def extra_state(self) -> dict[str, Any]:
        return {"evaluations": self.evaluations, "best": self.best}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.evaluations = list(state.get("evaluations", []))
        self.best = state.get("best")

    def train(self) -> list[tuple[int, float]]:
        """Train, then score the final model (with ``validation``); hooks come off the models."""
        try:
            history = super().train()
            if self.validation is not None:
                self.evaluate(self.total_steps)
                if dist.rank() == 0 and not (self.best_dir / "config.json").is_file():
                    raise FileNotFoundError(f"{self.best_dir}: the best model of {self.stage} is missing")
            return history
        finally:
            self.module.close()
            if self.teacher is not None:
                self.teacher.close()


def classifier(source: str | Path, spec: TaskSpec, seed: int) -> PreTrainedModel:
    """A sequence classifier for ``spec`` on top of the checkpoint at ``source`` (head seeded)."""
    torch.manual_seed(seed)
    problem = "regression" if spec.task_type == "regression" else "single_label_classification"
    return AutoModelForSequenceClassification.from_pretrained(
        str(source), num_labels=spec.num_labels, problem_type=problem
    )
