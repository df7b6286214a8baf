"""A Hugging Face ``Trainer`` that distils a teacher into the model it trains.

Install with the ``hf`` extra (``pip install 'elm-distill[hf]'``: transformers and accelerate).

:class:`DistillationTrainer` taps the student and the teacher with :class:`FeatureTaps`, runs a
:class:`DistillationLoss` on the two feature sets and adds it to the student's own task loss
(or, with ``task_loss_weight=0``, uses it alone). Everything else is the stock ``Trainer``:
gradient accumulation, mixed precision, evaluation, checkpoints and resuming, DeepSpeed and DDP.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

try:
    from safetensors.torch import load_file, save_file
    from transformers import Trainer
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "elm_distill.hf needs transformers and accelerate: pip install 'elm-distill[hf]'"
    ) from error

from elm_distill.config import DistillConfig
from elm_distill.features import FeatureKind, Features
from elm_distill.loss import DistillationLoss
from elm_distill.taps import FeatureTaps

OBJECTIVE_ATTR = "distill_objective"
"""Name of the submodule the objective is while attached to the student (see DistillationTrainer)."""
OBJECTIVE_WEIGHTS = "distill_objective.safetensors"
"""File beside the student's weights in every saved directory holding the objective's parameters."""
TASK_TERM = "task"
"""Label of the (weighted) task loss among the logged terms."""


class DistillationTrainer(Trainer):
    """A ``transformers.Trainer`` whose loss is ``task_loss_weight * task loss + KD objective``.

    ``model`` is the student; ``teacher`` any model the taps understand (BERT- or GPT-2-style, or
    one whose layers sit in an ``nn.ModuleList``). The teacher is moved to the trainer's device,
    put in eval mode with gradients off, and run under ``torch.no_grad`` on the same batch, labels
    removed. ``distill_config`` is a :class:`DistillConfig` (or its dict form), or a ready
    :class:`DistillationLoss`. Logits terms read ``outputs.logits``; attention-map terms ask
    both models for ``output_attentions`` (load them with ``attn_implementation="eager"``).

    The task loss is the student's ``outputs.loss`` (it needs labels in the batch). With
    ``task_loss_weight=0`` the labels are not passed to the student and the objective is the
    whole loss. Every term is logged, averaged since the last log, as ``distill/<term>`` with
    the training loss and ``eval_distill/<term>`` with evaluation metrics; ``distill/task`` is
    the weighted task loss.

    Learned projections: the objective's parameters (the student -> teacher width maps) must be
    trained with the student and checkpointed with it. During ``train()`` the objective is
    attached to the student as the submodule ``distill_objective``, so the optimizer the Trainer
    builds, a DeepSpeed engine (with or without an optimizer in its config), DDP and device
    placement all see it as part of the model, and a DeepSpeed checkpoint holds it; when
    ``train()`` returns it is taken off again, so the student's parameter count and
    ``save_pretrained`` are its own. Every directory the trainer saves (checkpoints and
    ``save_model``) holds a clean student that ``from_pretrained`` loads without unexpected keys,
    with the objective's parameters beside it in ``distill_objective.safetensors``; resuming (and
    ``load_best_model_at_end``) restores them. An optimizer passed in ``optimizers=`` must hold
    the objective's parameters.

    Gradient accumulation: the loss is a per-batch mean (task loss and objective alike), so the
    Trainer divides it by the accumulation steps; the student is not given ``num_items_in_batch``.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: Any = None,
        *,
        teacher: nn.Module,
        distill_config: DistillConfig | Mapping[str, Any] | DistillationLoss,
        task_loss_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if model is None:
            raise ValueError("DistillationTrainer needs the student as model= (model_init is not supported)")
        if task_loss_weight < 0:
            raise ValueError(f"task_loss_weight must be >= 0, got {task_loss_weight}")
        self.objective = (
            distill_config
            if isinstance(distill_config, DistillationLoss)
            else DistillationLoss(distill_config)
        )
        self.task_loss_weight = float(task_loss_weight)
        kinds = {term.features for term in self.objective.config.terms}
        self._wants_logits = FeatureKind.LOGITS in kinds
        self._wants_attention_maps = FeatureKind.ATTENTION_MAPS in kinds
        qkv = FeatureKind.QKV in kinds
        self.teacher = teacher
        self._teacher_taps = FeatureTaps(teacher, qkv=qkv, detach=True)
        self._student_taps = FeatureTaps(model, qkv=qkv)
        self._student = model
        self._has_parameters = any(True for _ in self.objective.parameters())
        optimizer = kwargs.get("optimizers", (None, None))[0]
        if optimizer is not None and self._has_parameters:
            given = {id(p) for group in optimizer.param_groups for p in group["params"]}
            if any(id(p) not in given for p in self.objective.parameters()):
                raise ValueError(
                    "the optimizer passed in optimizers= does not hold the objective's projection "
                    "parameters: build the objective first, objective = DistillationLoss(config), "
                    "optimize [*student.parameters(), *objective.parameters()], pass distill_config=objective"
                )
        super().__init__(model=model, args=args, **kwargs)
        self.teacher.to(self.args.device).eval().requires_grad_(False)
        self.objective.to(self.args.device)
        # The loss is a per-batch mean: the Trainer must scale it for gradient accumulation.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self._term_sums: dict[str, dict[str, Tensor]] = {}
        self._term_counts: dict[str, int] = {}

    # -- the loss -------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Tensor | tuple[Tensor, Any]:
        labels = set(self.label_names)
        unlabelled = {key: value for key, value in inputs.items() if key not in labels}
        extra = {"output_attentions": True} if self._wants_attention_maps else {}
        with torch.no_grad():
            teacher_outputs = self.teacher(**_accepted(self.teacher, unlabelled), **extra)
        teacher_features = self._complete(self._teacher_taps.features, teacher_outputs, "teacher")
        outputs = model(**(inputs if self.task_loss_weight > 0 else unlabelled), **extra)
        student_features = self._complete(self._student_taps.features, outputs, "student")
        result = self.objective(student_features, teacher_features, inputs.get("attention_mask"))
        loss = result.total
        terms = dict(result.terms)
        if self.task_loss_weight > 0:
            task_loss = outputs["loss"] if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
            if task_loss is None:
                raise ValueError(
                    "task_loss_weight > 0 but the student returned no loss: give the batch labels, "
                    "or set task_loss_weight=0 to train on the distillation objective alone"
                )
            weighted = self.task_loss_weight * task_loss
            loss = loss + weighted
            terms[TASK_TERM] = weighted.detach()
        self._record(terms, "train" if model.training else "eval")
        return (loss, outputs) if return_outputs else loss

    def _complete(self, features: Features, outputs: Any, who: str) -> Features:
        """Add what hooks cannot collect: logits and attention maps, from the model's outputs."""
        if self._wants_logits:
            features.logits = getattr(outputs, "logits", None)
        if self._wants_attention_maps:
            maps = getattr(outputs, "attentions", None)
            if not maps:
                raise ValueError(
                    f"the {who} returned no attention maps; load it with attn_implementation='eager'"
                )
            features.attention_maps = list(maps)
        return features

    # -- logging the terms ----------------------------------------------------------------------

    def _record(self, terms: Mapping[str, Tensor], mode: str) -> None:
        sums = self._term_sums.setdefault(mode, {})
        for label, value in terms.items():
            value = value.detach().float()
            sums[label] = sums[label] + value if label in sums else value
        self._term_counts[mode] = self._term_counts.get(mode, 0) + 1

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds each term's mean since the last log (``distill/...`` or ``eval_distill/...``)."""
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        sums = self._term_sums.pop(mode, None)
        count = self._term_counts.pop(mode, 0)
        if sums and count:
            labels = list(sums)
            means = torch.stack([sums[label] for label in labels]) / count
            if self.accelerator.num_processes > 1:
                means = self.accelerator.reduce(means, reduction="mean")
            prefix = "eval_distill/" if mode == "eval" else "distill/"
            # Updated in place: evaluate() returns this very dict as its metrics.
            logs.update(
                {prefix + label: round(float(v), 6) for label, v in zip(labels, means.tolist(), strict=True)}
            )
        super().log(logs, *args, **kwargs)

    # -- the objective's parameters: attached for training, saved beside the student ----------------

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.train`` with the objective attached to the student (see the class docstring)."""
        if self._has_parameters:
            self._student.add_module(OBJECTIVE_ATTR, self.objective)
        try:
            return super().train(*args, **kwargs)
        finally:
            self._student._modules.pop(OBJECTIVE_ATTR, None)

    @contextlib.contextmanager
    def _objective_detached(self) -> Iterator[None]:
        attached = OBJECTIVE_ATTR in self._student._modules
        if attached:
            delattr(self._student, OBJECTIVE_ATTR)
        try:
            yield
        finally:
            if attached:
                self._student.add_module(OBJECTIVE_ATTR, self.objective)

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Tensor] | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        prefix = OBJECTIVE_ATTR + "."
        if state_dict is None:  # the non-DeepSpeed path: the student's own state dict, then ours
            objective_state = self.objective.state_dict()
        else:  # DeepSpeed (and similar) gathered the whole module, objective included
            objective_state = {
                k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)
            } or self.objective.state_dict()  # (after train() the objective is off the module)
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
        with self._objective_detached():
            super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save and objective_state:
            tensors = {key: value.detach().cpu().contiguous() for key, value in objective_state.items()}
            save_file(tensors, str(Path(output_dir) / OBJECTIVE_WEIGHTS), metadata={"format": "pt"})

    def _load_objective(self, directory: str | Path) -> None:
        path = Path(directory) / OBJECTIVE_WEIGHTS
        if self._has_parameters:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{directory} has no {OBJECTIVE_WEIGHTS} with the objective's projections"
                )
            self.objective.load_state_dict(load_file(str(path), device="cpu"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        with self._objective_detached():
            super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_objective(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        if self.is_deepspeed_enabled:  # the engine's own checkpoint holds the whole module, objective too
            super()._load_best_model()
            return
        with self._objective_detached():
            super()._load_best_model()
        if self.state.best_model_checkpoint is not None:
            self._load_objective(self.state.best_model_checkpoint)


def _accepted(model: nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs ``model.forward`` names (a teacher of another family may not take all the student's)."""
    parameters = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return inputs
    return {key: value for key, value in inputs.items() if key in parameters}
