"""Retraining a chosen subnet by distillation (METHOD.md section 4, step 5a), and the
hand-designed baseline it is compared with.

A student is extracted from the supernet with its weights (or built from scratch) and trained
with hidden-state distillation plus, unless ``lm_loss`` is off (the reference's pure hidden-state
distillation on unmasked text), a language-modelling loss (masked tokens for the masked family,
next tokens for the causal one), which trains the LM head the perplexity evaluation reads. The baseline is all BERT blocks of one width and one head count, the widest such path of
the space that fits in the found model's parameter count, so a comparison isolates the searched
architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import datasets
import torch
from torch import nn
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

import elm_space
from elm_distill import DistillationLoss, Features
from elm_space import Architecture, BlockKind, Family, SearchSpace
from elm_train.config import ConfigError, KDConfig, RetrainStageConfig
from elm_train.models import ElmPreTrainedModel, ElmSupernet
from elm_train.training.kd import build_kd_loss, student_features
from elm_train.training.loop import LoopSettings, TrainLoop
from elm_train.training.supernet_training import SupernetKD

Init = Literal["supernet", "multitask", "scratch"]


class StudentKD(nn.Module):
    """A static student with its LM head and the distillation projections."""

    def __init__(self, student: ElmPreTrainedModel, objective: DistillationLoss, lm_weight: float) -> None:
        super().__init__()
        self.student = student
        self.objective = objective
        self.lm_weight = lm_weight

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None,
        teacher: Any,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Distillation, plus the LM loss on ``labels``; ``labels=None``: distillation alone."""
        out = self.student(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, output_hidden_states=True
        )
        kd = self.objective(student_features(out), teacher, attention_mask)
        logs = kd.as_floats()
        logs.pop("total")
        if labels is None:
            return kd.total, logs
        logs["lm"] = float(out.loss.detach())
        return kd.total + self.lm_weight * out.loss, logs


def narrowed_space(space: SearchSpace, choices: Sequence[elm_space.LayerChoice]) -> SearchSpace:
    """``space`` with each chosen candidate cut to the chosen FFN width.

    Growth keeps a candidate's trained slices in front, so a grown candidate read at a narrower
    width is that candidate's leading (trained) part, which the supernet extracts like any path.
    """
    layers = [list(layer) for layer in space.layers]
    for i, choice in enumerate(choices):
        where = f"layer {i} candidate {choice.candidate}"
        layers[i][choice.candidate] = elm_space.revalidated(
            layers[i][choice.candidate], where, ffn_width=choice.ffn_width
        )
    return elm_space.revalidated(space, space.name, layers=tuple(tuple(layer) for layer in layers))


def baseline_architecture(space: SearchSpace, budget: int) -> Architecture:
    """All-BERT path of one FFN width (and the most heads offered), the largest within ``budget``.

    Any width some layer offers is tried: a layer without that exact width takes its narrowest
    BERT candidate at least that wide, read at that width (see :func:`narrowed_space`). When no
    all-BERT path fits (a found model of cheap MobileBERT blocks can be smaller than any of
    them), the smallest is returned and the report says the baseline is over budget.
    """
    bert = [
        [(c.ffn_width, j, c) for j, c in enumerate(layer) if c.kind is BlockKind.BERT]
        for layer in space.layers
    ]
    if not all(bert):
        raise ConfigError(
            f"baseline.enabled: space {space.name!r} has a layer without BERT blocks, so no all-BERT "
            "baseline exists; set baseline.enabled: false"
        )
    offered = set().union(*({width for width, _, _ in layer} for layer in bert))
    paths = []
    for width in sorted(offered):
        fits = [[entry for entry in layer if entry[0] >= width] for layer in bert]
        if not all(fits):
            continue
        choices = [
            elm_space.LayerChoice(candidate=j, kind=BlockKind.BERT, ffn_width=width, heads=max(cand.heads))
            for _, j, cand in (min(layer, key=lambda e: (e[0], -e[1])) for layer in fits)
        ]
        paths.append(narrowed_space(space, choices).architecture(choices))
    fitting = [a for a in paths if elm_space.count_params(a) <= budget]
    return max(fitting, key=elm_space.count_params) if fitting else min(paths, key=elm_space.count_params)


def build_student(
    supernet: SupernetKD,
    arch: Architecture,
    init: Init,
    kd: KDConfig,
    teacher_width: int,
    teacher_layers: int,
    seed: int,
    multitask: ElmSupernet | None = None,
) -> tuple[ElmPreTrainedModel, DistillationLoss]:
    """The student with its LM head and its objective (``kd``'s terms).

    From supernet weights it also keeps the supernet's trained projections, which its hidden
    states were distilled through. ``init="multitask"`` takes the backbone (embeddings and
    blocks) from ``multitask``, the multitask-fine-tuned supernet, and the LM head and the
    projections from ``supernet``. ``supernet`` is narrowed to ``arch`` in place (and, for
    ``multitask``, overwritten), so pass a freshly loaded one per student.
    """
    space = supernet.supernet.space
    head = "causal_lm" if space.backbone.family is Family.CAUSAL else "masked_lm"
    objective = build_kd_loss(kd, space, teacher_width, teacher_layers, "retrain.kd")
    if init == "multitask":
        if multitask is None:
            raise ConfigError("retrain.init: 'multitask' needs the multitask stage (multitask.enabled)")
        backbone = {
            k: v for k, v in multitask.state_dict().items() if k.startswith(("embeddings.", "layers."))
        }
        missing, unexpected = supernet.supernet.load_state_dict(backbone, strict=False)
        assert not unexpected and not any(k.startswith(("embeddings.", "layers.")) for k in missing)
    if init in ("supernet", "multitask"):
        supernet.supernet.space = narrowed_space(space, arch.layers)  # a fresh copy: the baseline may cut
        student = supernet.supernet.extract(arch, head=head)
        objective.load_state_dict(supernet.objective.state_dict())
    else:
        torch.manual_seed(seed)
        scratch = ElmSupernet(narrowed_space(space, arch.layers), supernet.supernet.settings)
        student = scratch.extract(arch, head=head)
    return student.train(), objective


class Retraining(TrainLoop):
    """Distillation (plus the LM loss unless ``settings.lm_loss`` is off) for one static student;
    ``train()`` runs it.

    ``teacher`` maps (input ids, attention mask) to the teacher's features: a
    :class:`~elm_train.TeacherFeatures`, or any callable that returns the same (a cache, say).
    """

    def __init__(
        self,
        name: str,
        student: ElmPreTrainedModel,
        objective: DistillationLoss,
        teacher: Callable[[torch.Tensor, torch.Tensor], Features],
        train: datasets.Dataset,
        settings: RetrainStageConfig,
        loop: LoopSettings,
        *,
        tokenizer: PreTrainedTokenizerBase,
    ) -> None:
        self.stage = f"retrain.{name}"
        self.teacher = teacher
        self.lm_loss = settings.lm_loss  # False: pure hidden-state KD on unmasked inputs
        self.collator = (
            None
            if student.config.is_causal or not self.lm_loss
            else DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
        )
        self.model = StudentKD(student, objective, settings.lm_weight)
        super().__init__(self.model, train, settings.optim, loop)

    def micro_loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        labels: torch.Tensor | None
        if not self.lm_loss:
            labels = None
        elif self.collator is None:
            labels = input_ids.masked_fill(mask == 0, -100)
        else:
            masked = self.collator.torch_call([{"input_ids": row} for row in input_ids.tolist()])
            input_ids, labels = masked["input_ids"], masked["labels"]
        return self.engine(input_ids, mask, labels, self.teacher(input_ids, mask))
