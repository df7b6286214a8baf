"""The pydantic configuration of a distillation objective: which terms, on which features, how weighted.

Loss names and their parameters are checked against the loss registry when the config is built,
so register custom losses (:func:`elm_distill.register_loss`) before loading a config that names
them.
"""

from __future__ import annotations

from typing import Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)

from elm_distill.features import FeatureKind
from elm_distill.layer_map import LayerMapKind
from elm_distill.registry import LOSSES

_PROJECTABLE = (FeatureKind.EMBEDDINGS, FeatureKind.ATTENTION, FeatureKind.LAYERS)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TermConfig(_Config):
    """One weighted loss on one kind of feature, e.g. Pearson loss on every mapped layer output."""

    loss: str
    """A registered loss name: mse, pearson, attention_kl, soft_ce, kl, logits_mse, dist, self_relation, minilm."""
    features: FeatureKind
    """Which :class:`elm_distill.Features` field the loss compares."""
    weight: float = Field(default=1.0, ge=0)
    name: str | None = None
    """Label in the per-term breakdown; defaults to ``"<features>.<loss>"``."""
    params: dict[str, bool | int | float] = Field(default_factory=dict)
    """Keyword parameters of the loss (temperature, beta, gamma, num_relation_heads, ...)."""
    projection: str | None = None
    """Name of an entry in ``DistillConfig.projections`` applied to the student's features first."""
    layer_pairs: list[tuple[NonNegativeInt, NonNegativeInt]] | None = None
    """(student, teacher) layer pairs for this term only, overriding the layer map (e.g. MiniLM's one pair)."""

    @field_validator("loss")
    @classmethod
    def _loss_is_registered(cls, loss: str) -> str:
        if loss not in LOSSES:
            raise ValueError(f"no loss named {loss!r}; registered: {', '.join(LOSSES.names())}")
        return loss

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        LOSSES.check_params(self.loss, self.params)
        if self.layer_pairs is not None and not self.features.per_layer:
            raise ValueError(f"layer_pairs only applies to per-layer features, not {self.features.value!r}")
        if self.layer_pairs is not None and not self.layer_pairs:
            raise ValueError(
                "layer_pairs is empty: give at least one (student, teacher) pair or leave it out"
            )
        if self.projection is not None and self.features not in _PROJECTABLE:
            raise ValueError(
                f"projection applies to {[kind.value for kind in _PROJECTABLE]}, not {self.features.value!r}"
            )
        return self

    @property
    def label(self) -> str:
        return self.name if self.name is not None else f"{self.features.value}.{self.loss}"


class LayerMapConfig(_Config):
    """How student layers pick teacher layers (see :func:`elm_distill.build_layer_map`)."""

    kind: LayerMapKind = LayerMapKind.UNIFORM_LAST
    teacher_layers: list[NonNegativeInt] | None = None
    """For ``explicit``: the teacher layer of each student layer, in student order."""

    @model_validator(mode="after")
    def _teacher_layers_match_kind(self) -> Self:
        if self.kind is LayerMapKind.EXPLICIT and self.teacher_layers is None:
            raise ValueError("layer_map.kind 'explicit' needs teacher_layers")
        if self.kind is not LayerMapKind.EXPLICIT and self.teacher_layers is not None:
            raise ValueError(
                f"layer_map.teacher_layers is only used with kind 'explicit', not {self.kind.value!r}"
            )
        return self


class ProjectionConfig(_Config):
    """A learned student -> teacher width map (see :class:`elm_distill.WidthProjection`)."""

    student_widths: list[PositiveInt] = Field(min_length=1)
    teacher_width: PositiveInt
    learn_when_equal: bool = False


class DistillConfig(_Config):
    """A whole distillation objective."""

    terms: list[TermConfig] = Field(min_length=1)
    temperature: float = Field(default=1.0, gt=0)
    """Default temperature for every term whose loss takes one and whose params do not set it."""
    layer_map: LayerMapConfig = Field(default_factory=LayerMapConfig)
    projections: dict[str, ProjectionConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _terms_fit_together(self) -> Self:
        labels = [term.label for term in self.terms]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"term labels must be unique, repeated: {duplicates}; set a distinct 'name'")
        for index, term in enumerate(self.terms):
            if term.projection is not None and term.projection not in self.projections:
                raise ValueError(
                    f"terms[{index}].projection {term.projection!r} is not in projections "
                    f"({sorted(self.projections) or 'none defined'})"
                )
        return self
