"""Model settings that are not architecture (activations, dropout, norms, init), and the bridge
between elm-space architectures and ElmConfig.

The settings are validated here, once, so that the supernet and every static model extracted
from it are built from the same values.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from transformers.activations import ACT2FN

from elm_space import Architecture
from elm_train.models.configuration_elm import ElmConfig


class ModelSettings(BaseModel):
    """Everything an ElmConfig holds besides the architecture and the task labels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_act: str = "gelu_pytorch_tanh"
    """BERT FFN and LM-head activation; the tanh GELU of the reference code."""
    mobile_hidden_act: str = "relu"
    """Mobile block FFN activation."""
    hidden_dropout_prob: float = Field(0.1, ge=0.0, lt=1.0)
    attention_probs_dropout_prob: float = Field(0.1, ge=0.0, lt=1.0)
    classifier_dropout: float | None = Field(None, ge=0.0, lt=1.0)
    """Dropout before the classifier; None means hidden_dropout_prob."""
    layer_norm_eps: float = Field(1e-5, gt=0.0)
    initializer_range: float = Field(0.02, gt=0.0)
    pad_token_id: int | None = 0

    @field_validator("hidden_act", "mobile_hidden_act")
    @classmethod
    def _known_activation(cls, value: str) -> str:
        if value not in ACT2FN:
            raise ValueError(f"unknown activation {value!r}; transformers knows {sorted(ACT2FN)}")
        return value

    @classmethod
    def from_config(cls, config: ElmConfig) -> ModelSettings:
        return cls(**{name: getattr(config, name) for name in cls.model_fields})


def elm_config(
    arch: Architecture,
    settings: ModelSettings | None = None,
    *,
    num_labels: int = 2,
    problem_type: str | None = None,
) -> ElmConfig:
    """The ElmConfig of a static model for ``arch``."""
    settings = settings or ModelSettings()
    return ElmConfig(
        architecture=arch.model_dump(mode="json"),
        num_labels=num_labels,
        problem_type=problem_type,
        **settings.model_dump(),
    )


def architecture_of(config: ElmConfig) -> Architecture:
    """The validated elm-space Architecture a config was built from."""
    return Architecture.model_validate(config.require_architecture())
