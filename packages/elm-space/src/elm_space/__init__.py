"""Search-space schema for ELM: block kinds, architectures, exact parameter and FLOP counts."""

from elm_space.counting import (
    HEADS,
    FlopBreakdown,
    Head,
    ParamBreakdown,
    count_flops,
    count_params,
    embedding_params,
    flop_breakdown,
    head_params,
    layer_flops,
    layer_params,
    param_breakdown,
)
from elm_space.growth import grow, grow_ranked
from elm_space.io import dumps, load, loads, save
from elm_space.presets import PRESETS, preset
from elm_space.sampling import mean_params, neighbours, sample, sample_choice, sample_many
from elm_space.schema import (
    Architecture,
    Backbone,
    BlockKind,
    CandidateSpec,
    EmbeddingSpec,
    Family,
    LayerChoice,
    SearchSpace,
    SpaceError,
    SpaceFileNotFoundError,
    UnknownPresetError,
    describe_validation_error,
    revalidated,
)

__version__ = "0.1.0"

__all__ = [
    "HEADS",
    "PRESETS",
    "Architecture",
    "Backbone",
    "BlockKind",
    "CandidateSpec",
    "EmbeddingSpec",
    "Family",
    "FlopBreakdown",
    "Head",
    "LayerChoice",
    "ParamBreakdown",
    "SearchSpace",
    "SpaceError",
    "SpaceFileNotFoundError",
    "UnknownPresetError",
    "count_flops",
    "count_params",
    "describe_validation_error",
    "dumps",
    "embedding_params",
    "flop_breakdown",
    "grow",
    "grow_ranked",
    "head_params",
    "layer_flops",
    "layer_params",
    "load",
    "loads",
    "mean_params",
    "neighbours",
    "param_breakdown",
    "preset",
    "revalidated",
    "sample",
    "sample_choice",
    "sample_many",
    "save",
]
