"""Hidden-state distillation between an ELM student (or supernet path) and a Hugging Face teacher.

The terms are METHOD.md section 3's: the embedding output, each attention sublayer's output and
each layer's output, lifted to the teacher's width by learned projections (one for H-wide
features, one per attention width, since MobileBERT blocks attend in their bottleneck). The
losses and the objective are elm-distill's; this module only wires ELM's outputs into them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from elm_distill import DistillationLoss, FeatureKind, Features, FeatureTaps
from elm_space import BlockKind, Family, SearchSpace
from elm_train.config import ConfigError, KDConfig, RunConfig
from elm_train.teacher import teacher_layers, teacher_width


def teacher_layers_for(
    num_student: int, num_teacher: int, layer_map: str | list[int], field: str = "kd.layer_map"
) -> list[int]:
    """Teacher layer per student layer. ``last``/``first`` of each group, also for uneven groups.

    With ``L_t = r * L_s`` this is the reference's uniform map; otherwise the groups are the
    ceil-rounded shares (6 teacher layers over 4 students: last layers 1, 2, 4, 5). A student
    deeper than its teacher shares teacher layers between neighbouring student layers. An
    explicit list that does not fit is a :class:`ConfigError` naming ``field``.
    """
    if isinstance(layer_map, list):
        if len(layer_map) != num_student:
            raise ConfigError(
                f"{field} lists {len(layer_map)} teacher layers for {num_student} student layers"
            )
        bad = [t for t in layer_map if not 0 <= t < num_teacher]
        if bad:
            raise ConfigError(
                f"{field} names teacher layers {bad} outside 0..{num_teacher - 1} "
                f"(the teacher has {num_teacher} layers)"
            )
        return list(layer_map)
    if layer_map == "last":
        return [math.ceil((s + 1) * num_teacher / num_student) - 1 for s in range(num_student)]
    return [math.floor(s * num_teacher / num_student) for s in range(num_student)]


def layer_maps(config: RunConfig) -> dict[str, str | list[int]]:
    """Every layer map a run will use, by its config field."""
    maps: dict[str, str | list[int]] = {
        "supernet.kd.layer_map": config.supernet.kd.layer_map,
        "retrain.kd.layer_map": config.retrain.kd.layer_map,
    }
    if config.task_names or config.multitask.enabled:
        maps["tasks.layer_map"] = config.tasks.layer_map
    return maps


def check_layer_maps(config: RunConfig, num_teacher_layers: int) -> None:
    """Each explicit layer map against the teacher's depth and the student's, as soon as the
    teacher's depth is known (from its config before the run, else right after it loads), so a
    map that does not fit stops the run before any training."""
    num_student = config.search_space().num_layers
    for field, layer_map in layer_maps(config).items():
        teacher_layers_for(num_student, num_teacher_layers, layer_map, field)


def attention_widths(space: SearchSpace) -> list[int]:
    hidden = space.backbone.hidden_size
    return sorted({c.attention_width(hidden) for layer in space.layers for c in layer})


def build_kd_loss(
    kd: KDConfig, space: SearchSpace, teacher_width: int, num_teacher_layers: int, section: str = "kd"
) -> DistillationLoss:
    """The hidden-state terms, plus (causal family) soft cross-entropy on the next-token logits.

    The logits term needs no projection: student and teacher share the tokenizer, so their
    vocabularies match. It is taken at T and multiplied by T squared (Hinton's scaling), which
    keeps its gradients comparable to the LM loss's whatever the temperature.
    """
    loss = kd.hidden_loss
    teacher_layers = teacher_layers_for(
        space.num_layers, num_teacher_layers, kd.layer_map, f"{section}.layer_map"
    )
    terms: list[dict[str, Any]] = []
    for features, weight, projection in (
        ("embeddings", kd.embedding_weight, "hidden"),
        ("attention", kd.attention_weight, "attention"),
        ("layers", kd.layer_weight, "hidden"),
    ):
        if weight > 0:
            terms.append({"loss": loss, "features": features, "weight": weight, "projection": projection})
    logits_weight = kd.logits_weight_for(space.backbone.family is Family.CAUSAL)
    if logits_weight > 0:
        params = {"temperature": kd.temperature, "t_squared": True}
        terms.append({"loss": "soft_ce", "features": "logits", "weight": logits_weight, "params": params})
    if not terms:
        raise ConfigError(f"{section}: every distillation weight is 0, so there is nothing to distil")
    return DistillationLoss(
        {
            "terms": terms,
            "layer_map": {"kind": "explicit", "teacher_layers": teacher_layers},
            "projections": {
                "hidden": {"student_widths": [space.backbone.hidden_size], "teacher_width": teacher_width},
                "attention": {"student_widths": attention_widths(space), "teacher_width": teacher_width},
            },
        }
    )


def uses_logits(objective: DistillationLoss) -> bool:
    return any(term.features is FeatureKind.LOGITS for term in objective.config.terms)


def student_features(output: Any) -> Features:
    """Features from an ELM output requested with ``output_hidden_states=True`` (with its LM
    logits when the output has them)."""
    states = output.hidden_states
    return Features(
        embeddings=states[0],
        attention=list(output.attention_outputs),
        layers=list(states[1:]),
        logits=getattr(output, "logits", None),
    )


class TeacherFeatures:
    """Runs the frozen teacher and returns its features, detached; a teacher with an LM head
    (the causal family's) adds its logits."""

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher
        self.taps = FeatureTaps(teacher, detach=True)

    @property
    def num_layers(self) -> int:
        return self.taps.num_layers

    @property
    def width(self) -> int:
        """The teacher's hidden size, which the distillation projections map to."""
        return teacher_width(self.teacher)

    @property
    def config_layers(self) -> int:
        """The layer count its config declares (the taps' count for the models we know)."""
        return teacher_layers(self.teacher)

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> Features:
        if next(self.teacher.parameters()).device != input_ids.device:  # follow the student to a GPU
            self.teacher.to(input_ids.device)
        output = self.teacher(input_ids=input_ids, attention_mask=attention_mask)
        features = self.taps.features
        features.logits = getattr(output, "logits", None)
        return features


def kind_eta(kind: BlockKind, eta_bert: float, eta_mobile: float) -> float:
    return eta_bert if kind is BlockKind.BERT else eta_mobile
