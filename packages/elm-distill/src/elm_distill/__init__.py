"""Knowledge-distillation losses, projections, layer maps and feature taps for transformer students.

Losses are plain functions ``loss(student, teacher, mask=None, **params) -> scalar`` that skip
padded tokens and compute in float32 even for bf16 inputs. :class:`FeatureTaps` collects the
features they compare from Hugging Face models without editing them, and
:class:`DistillationLoss` combines named losses as a :class:`DistillConfig` says.
"""

from elm_distill.attention import attention_map_kl
from elm_distill.cka import head_cka_matrix, linear_cka, per_head_features, redundant_heads
from elm_distill.config import DistillConfig, LayerMapConfig, ProjectionConfig, TermConfig
from elm_distill.dist import dist_loss, inter_class_relation, intra_class_relation
from elm_distill.features import FeatureKind, Features
from elm_distill.hidden import hidden_mse, pearson_hidden_loss, standardize_over_tokens
from elm_distill.layer_map import LayerMapError, LayerMapKind, build_layer_map
from elm_distill.logits import kl_div_loss, logits_mse, soft_cross_entropy
from elm_distill.loss import DistillationLoss, DistillationLossOutput
from elm_distill.minilm import QKV, minilm_v2_loss, self_relation_loss
from elm_distill.projection import WidthProjection
from elm_distill.registry import LOSSES, LossRegistry, get_loss, register_loss
from elm_distill.taps import FeatureTaps, TapError

__version__ = "0.1.0"

__all__ = [
    "LOSSES",
    "QKV",
    "DistillConfig",
    "DistillationLoss",
    "DistillationLossOutput",
    "FeatureKind",
    "FeatureTaps",
    "Features",
    "LayerMapConfig",
    "LayerMapError",
    "LayerMapKind",
    "LossRegistry",
    "ProjectionConfig",
    "TapError",
    "TermConfig",
    "WidthProjection",
    "attention_map_kl",
    "build_layer_map",
    "dist_loss",
    "get_loss",
    "head_cka_matrix",
    "hidden_mse",
    "inter_class_relation",
    "intra_class_relation",
    "kl_div_loss",
    "linear_cka",
    "logits_mse",
    "minilm_v2_loss",
    "pearson_hidden_loss",
    "per_head_features",
    "redundant_heads",
    "register_loss",
    "self_relation_loss",
    "soft_cross_entropy",
    "standardize_over_tokens",
]
