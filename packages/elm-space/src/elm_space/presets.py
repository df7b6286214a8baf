"""Named search spaces: the paper's three (after the reference code) and small ones.

The paper spaces follow METHOD.md section 1: per layer, 6 BERT and 6 MobileBERT candidates (3 + 3
for elm-micro), all growable by one increment at a time to the same maximum. elm-micro keeps the
reference's initial widths of 1..3 increments. elm-small and elm-tiny start every candidate at one
increment: with the reference's 1..6 their mean sampled size is above the growth budget from the
start, so the dynamic dimension could never run (GROWTH.md beside this package's README).
``elm-small-staircase`` and ``elm-tiny-staircase`` are the same spaces with the reference's own
starting widths (1..6 increments), for comparisons with the paper: growth never runs in them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from elm_space.schema import (
    Backbone,
    BlockKind,
    CandidateSpec,
    EmbeddingSpec,
    Family,
    SearchSpace,
    SpaceError,
    UnknownPresetError,
    describe_validation_error,
    revalidated,
)


def _candidates(
    per_kind: int,
    increment: int,
    max_width: int,
    heads: tuple[int, ...],
    inner_size: int,
    mobile_increment: int | None = None,
    mobile_max: int | None = None,
    staircase: bool = True,
) -> tuple[CandidateSpec, ...]:
    """``per_kind`` BERT then ``per_kind`` mobile candidates; the j-th of a kind starts at j + 1
    increments (``staircase``) or at one increment."""
    mobile_increment = mobile_increment or increment
    bert = [
        CandidateSpec(
            kind=BlockKind.BERT,
            ffn_width=increment * (j + 1 if staircase else 1),
            max_ffn_width=max_width,
            increment=increment,
            heads=heads,
        )
        for j in range(per_kind)
    ]
    mobile = [
        CandidateSpec(
            kind=BlockKind.MOBILE,
            ffn_width=mobile_increment * (j + 1 if staircase else 1),
            max_ffn_width=mobile_max or max_width,
            increment=mobile_increment,
            heads=heads,
            inner_size=inner_size,
        )
        for j in range(per_kind)
    ]
    return tuple(bert + mobile)


def _space(
    name: str, backbone: Backbone, layers: int, cands: tuple[CandidateSpec, ...], budget: int | None
) -> SearchSpace:
    return SearchSpace(name=name, backbone=backbone, layers=(cands,) * layers, param_budget=budget)


def _bert_vocab_backbone(hidden: int, **overrides: Any) -> Backbone:
    fields: dict[str, Any] = {
        "hidden_size": hidden,
        "vocab_size": 30522,
        "max_positions": 512,
        "type_vocab_size": 2,
        "embedding": EmbeddingSpec(kind="factorized", size=128),
    }
    fields.update(overrides)
    return Backbone(**fields)


def elm_small(**backbone: Any) -> SearchSpace:
    """12 layers x 528, 12 candidates per layer, every FFN starting at 132 and growing by 132 to 792;
    a 15.7M budget (growth stops at a mean sampled size of 15.7M; the search's default limit)."""
    return _space(
        "elm-small",
        _bert_vocab_backbone(528, **backbone),
        12,
        _candidates(6, 132, 792, (12,), 132, staircase=False),
        15_700_000,
    )


def elm_tiny(**backbone: Any) -> SearchSpace:
    """6 layers x 528 (the reference's 10M configuration), candidates as elm-small, a 10M budget."""
    return _space(
        "elm-tiny",
        _bert_vocab_backbone(528, **backbone),
        6,
        _candidates(6, 132, 792, (12,), 132, staircase=False),
        10_000_000,
    )


def elm_small_staircase(**backbone: Any) -> SearchSpace:
    """elm-small with the reference's starting widths: candidate j of a kind at (j + 1) x 132, so
    132..792 from the start. Its mean sampled size (16,979,304) is above the 15.7M budget, so
    growth never runs, as in the reference taken literally (GROWTH.md)."""
    return _space(
        "elm-small-staircase",
        _bert_vocab_backbone(528, **backbone),
        12,
        _candidates(6, 132, 792, (12,), 132),
        15_700_000,
    )


def elm_tiny_staircase(**backbone: Any) -> SearchSpace:
    """elm-tiny with the reference's starting widths (132..792); its mean (10,680,924) is above the
    10M budget, so growth never runs (GROWTH.md)."""
    return _space(
        "elm-tiny-staircase",
        _bert_vocab_backbone(528, **backbone),
        6,
        _candidates(6, 132, 792, (12,), 132),
        10_000_000,
    )


def elm_micro(**backbone: Any) -> SearchSpace:
    """6 layers x 192, 3 widths per kind growing by 48 to 384 (the reference's 5M configuration)."""
    return _space(
        "elm-micro", _bert_vocab_backbone(192, **backbone), 6, _candidates(3, 48, 384, (12,), 48), 5_000_000
    )


def demo(**backbone: Any) -> SearchSpace:
    """The CPU demo: 4 layers x 128 on the BERT vocabulary, two widths per kind, 2 or 4 heads."""
    fields: dict[str, Any] = {"embedding": EmbeddingSpec(kind="factorized", size=64), "max_positions": 128}
    fields.update(backbone)
    cands = _candidates(2, 128, 512, (2, 4), 64, mobile_increment=64, mobile_max=256)
    return _space("demo", _bert_vocab_backbone(128, **fields), 4, cands, 2_450_000)


def demo_clm(**backbone: Any) -> SearchSpace:
    """The causal demo: 4 layers x 128, plain embedding, on a small trained vocabulary."""
    fields: dict[str, Any] = {
        "family": Family.CAUSAL,
        "hidden_size": 128,
        "vocab_size": 8000,
        "max_positions": 128,
        "type_vocab_size": 0,
        "embedding": EmbeddingSpec(),
    }
    fields.update(backbone)
    cands = _candidates(2, 128, 512, (2, 4), 64, mobile_increment=64, mobile_max=256)
    return _space("demo-clm", Backbone(**fields), 4, cands, 2_200_000)


def tiny(**backbone: Any) -> SearchSpace:
    """Unit-test size: 3 layers x 32, plain embedding, 4 candidates x 2 head counts per layer."""
    fields: dict[str, Any] = {"hidden_size": 32, "vocab_size": 100, "max_positions": 64, "type_vocab_size": 2}
    fields.update(backbone)
    cands = _candidates(2, 32, 96, (2, 4), 16, mobile_increment=16, mobile_max=64)
    return _space("tiny", Backbone(**fields), 3, cands, None)


def tiny_factorized(**backbone: Any) -> SearchSpace:
    """``tiny`` with MobileBERT's factorised embedding (E = 16)."""
    fields: dict[str, Any] = {"embedding": EmbeddingSpec(kind="factorized", size=16)}
    fields.update(backbone)
    return revalidated(tiny(**fields), "preset 'tiny-factorized'", name="tiny-factorized")


PRESETS: dict[str, Callable[..., SearchSpace]] = {
    "elm-small": elm_small,
    "elm-tiny": elm_tiny,
    "elm-micro": elm_micro,
    "elm-small-staircase": elm_small_staircase,
    "elm-tiny-staircase": elm_tiny_staircase,
    "demo": demo,
    "demo-clm": demo_clm,
    "tiny": tiny,
    "tiny-factorized": tiny_factorized,
}


def preset(name: str, **backbone: Any) -> SearchSpace:
    """A named space; keyword arguments override backbone fields (e.g. ``vocab_size``, ``family``)."""
    try:
        factory = PRESETS[name]
    except (KeyError, TypeError):
        raise UnknownPresetError(
            f"unknown search-space preset {name!r}; known: {', '.join(PRESETS)}"
        ) from None
    try:
        return factory(**backbone)
    except ValidationError as err:
        raise SpaceError(f"preset {name!r}: {describe_validation_error(err)}") from None
