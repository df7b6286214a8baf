"""The features one forward pass yields for distillation, student or teacher alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from torch import Tensor

from elm_distill.minilm import QKV


class FeatureKind(StrEnum):
    """Which field of :class:`Features` a distillation term reads."""

    EMBEDDINGS = "embeddings"
    ATTENTION = "attention"
    LAYERS = "layers"
    QKV = "qkv"
    ATTENTION_MAPS = "attention_maps"
    LOGITS = "logits"

    @property
    def per_layer(self) -> bool:
        """Per-layer kinds are lists paired through the layer map; the others are one tensor."""
        return self in (
            FeatureKind.ATTENTION,
            FeatureKind.LAYERS,
            FeatureKind.QKV,
            FeatureKind.ATTENTION_MAPS,
        )


@dataclass
class Features:
    """Tensors from one forward pass, as :class:`elm_distill.FeatureTaps` collects them.

    Per-layer lists are indexed by 0-based layer. ``logits`` and ``attention_maps`` are not
    tapped: set them from the model's output (``outputs.logits``, ``outputs.attentions``).
    """

    embeddings: Tensor | None = None
    """Embedding output, i.e. the first layer's input, ``[B, T, H]``."""
    attention: list[Tensor] = field(default_factory=list)
    """Each layer's attention-sublayer output, ``[B, T, H]``."""
    layers: list[Tensor] = field(default_factory=list)
    """Each layer's output, ``[B, T, H]``."""
    qkv: list[QKV] = field(default_factory=list)
    """Each layer's query, key and value projections (only when tapped with ``qkv=True``)."""
    attention_maps: list[Tensor] = field(default_factory=list)
    """Each layer's attention probabilities ``[B, heads, T, T]``."""
    logits: Tensor | None = None
    """Prediction-head output, ``[N, C]`` or ``[B, T, V]``."""
