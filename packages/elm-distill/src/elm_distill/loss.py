"""The composite distillation objective: a weighted sum of configured terms, with a breakdown.

It is an ``nn.Module`` because it owns the learned width projections: move it to the student's
device and give its parameters to the optimizer together with the student's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from elm_distill.config import DistillConfig, TermConfig
from elm_distill.features import FeatureKind, Features
from elm_distill.layer_map import build_layer_map
from elm_distill.projection import WidthProjection
from elm_distill.registry import LOSSES


@dataclass(frozen=True)
class DistillationLossOutput:
    """The loss to back-propagate and what each term contributed to it."""

    total: Tensor
    terms: dict[str, Tensor]
    """Per-term weighted contributions (detached); they sum to ``total``."""

    def as_floats(self) -> dict[str, float]:
        """``{"total": ..., <term label>: ...}`` as Python floats, for a metrics log line."""
        return {
            "total": float(self.total.detach()),
            **{key: float(value) for key, value in self.terms.items()},
        }


class DistillationLoss(nn.Module):
    """Evaluates a :class:`DistillConfig` on student and teacher :class:`Features`.

    Per-layer terms sum over the mapped (student, teacher) layer pairs, as ELM's reference does;
    the layer map is built from the lengths of the two feature lists. The padding mask ``[B, T]``
    goes to every token-level term; logits terms get it only for token-level ``[B, T, V]``
    logits, since sequence-level ``[N, C]`` logits have no padding.
    """

    def __init__(self, config: DistillConfig | Mapping[str, Any]) -> None:
        super().__init__()
        self.config = config if isinstance(config, DistillConfig) else DistillConfig.model_validate(config)
        self.projections = nn.ModuleDict(
            {
                name: WidthProjection(
                    spec.student_widths, spec.teacher_width, learn_when_equal=spec.learn_when_equal
                )
                for name, spec in self.config.projections.items()
            }
        )

    def layer_pairs(self, term: TermConfig, num_student: int, num_teacher: int) -> list[tuple[int, int]]:
        """The (student, teacher) layer pairs ``term`` compares."""
        if term.layer_pairs is not None:
            pairs = [tuple(pair) for pair in term.layer_pairs]
            for student_layer, teacher_layer in pairs:
                if student_layer >= num_student or teacher_layer >= num_teacher:
                    raise ValueError(
                        f"term {term.label!r}: layer pair ({student_layer}, {teacher_layer}) is outside the "
                        f"student's {num_student} / teacher's {num_teacher} layers"
                    )
            return pairs
        layer_map = self.config.layer_map
        return build_layer_map(num_student, num_teacher, layer_map.kind, layer_map.teacher_layers)

    def forward(
        self, student: Features, teacher: Features, mask: Tensor | None = None
    ) -> DistillationLossOutput:
        total: Tensor | None = None
        terms: dict[str, Tensor] = {}
        for term in self.config.terms:
            contribution = term.weight * self._evaluate(term, student, teacher, mask)
            terms[term.label] = contribution.detach()
            total = contribution if total is None else total + contribution
        assert total is not None  # the config has at least one term
        return DistillationLossOutput(total=total, terms=terms)

    def _evaluate(
        self, term: TermConfig, student: Features, teacher: Features, mask: Tensor | None
    ) -> Tensor:
        loss = LOSSES.get(term.loss)
        params: dict[str, Any] = dict(term.params)
        if "temperature" in LOSSES.parameters(term.loss):
            params.setdefault("temperature", self.config.temperature)
        project = self.projections[term.projection] if term.projection is not None else (lambda x: x)
        kind = term.features
        s_value = _field(student, kind, "student", term)
        t_value = _field(teacher, kind, "teacher", term)
        if not kind.per_layer:
            if kind is FeatureKind.LOGITS and s_value.dim() != 3:
                mask = None
            return loss(project(s_value), t_value, mask, **params)
        pairs = self.layer_pairs(term, len(s_value), len(t_value))
        values = [loss(project(s_value[s]), t_value[t], mask, **params) for s, t in pairs]
        return sum(values[1:], start=values[0])


def _field(features: Features, kind: FeatureKind, who: str, term: TermConfig) -> Any:
    value = getattr(features, kind.value)
    if value is None or (kind.per_layer and len(value) == 0):
        hint = " (tap with FeatureTaps(..., qkv=True))" if kind is FeatureKind.QKV else ""
        raise ValueError(f"term {term.label!r} needs {who}.{kind.value}, which is empty{hint}")
    return value
