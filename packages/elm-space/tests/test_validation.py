"""Every validation error names the field and the offending value."""

import pytest
from pydantic import ValidationError

from elm_space import (
    Architecture,
    Backbone,
    BlockKind,
    CandidateSpec,
    EmbeddingSpec,
    LayerChoice,
    SearchSpace,
    SpaceError,
    preset,
)


def test_non_positive_sizes_are_named():
    with pytest.raises(ValidationError, match=r"hidden_size[\s\S]*greater than 0[\s\S]*input_value=0"):
        Backbone(hidden_size=0, vocab_size=10)
    with pytest.raises(ValidationError, match=r"ffn_width[\s\S]*input_value=-4"):
        CandidateSpec(kind="bert", ffn_width=-4, max_ffn_width=8, increment=4, heads=(2,))


def test_width_above_maximum():
    with pytest.raises(ValidationError, match="ffn_width=96 is above max_ffn_width=64"):
        CandidateSpec(kind="bert", ffn_width=96, max_ffn_width=64, increment=32, heads=(2,))


def test_unknown_block_kind():
    with pytest.raises(ValidationError, match=r"kind[\s\S]*'bert' or 'mobile'[\s\S]*input_value='conv'"):
        CandidateSpec(kind="conv", ffn_width=8, max_ffn_width=8, increment=4, heads=(2,))
    with pytest.raises(SpaceError, match="unknown block kind 'X'"):
        LayerChoice.from_token("0:X32h2")


def test_heads_must_divide_attention_width():
    backbone = Backbone(hidden_size=32, vocab_size=10)
    bad = CandidateSpec(kind="bert", ffn_width=32, max_ffn_width=32, increment=32, heads=(2, 5))
    with pytest.raises(
        ValidationError,
        match=r"layers\[0\]\[0\]\.heads contains 5, which does not divide the attention width 32",
    ):
        SearchSpace(backbone=backbone, layers=((bad,),))
    mobile = CandidateSpec(
        kind="mobile", ffn_width=16, max_ffn_width=16, increment=16, heads=(3,), inner_size=16
    )
    with pytest.raises(
        ValidationError, match="contains 3, which does not divide the attention width 16 of its mobile block"
    ):
        SearchSpace(backbone=backbone, layers=((mobile,),))
    with pytest.raises(SpaceError, match=r"layers\[1\]\.heads=3 does not divide the attention width 32"):
        Architecture.from_string("0:B32h2|0:B32h3", backbone)


def test_inner_size_only_for_mobile():
    with pytest.raises(ValidationError, match="inner_size is required for a 'mobile' block"):
        CandidateSpec(kind="mobile", ffn_width=8, max_ffn_width=8, increment=8, heads=(2,))
    with pytest.raises(ValidationError, match="inner_size=8 is only meaningful for a 'mobile' block"):
        CandidateSpec(
            kind=BlockKind.BERT, ffn_width=8, max_ffn_width=8, increment=8, heads=(2,), inner_size=8
        )


def test_factorized_embedding_needs_size():
    with pytest.raises(ValidationError, match="embedding.size is required"):
        EmbeddingSpec(kind="factorized")
    with pytest.raises(ValidationError, match="embedding.size=16 is only meaningful"):
        EmbeddingSpec(kind="plain", size=16)


def test_empty_layer_and_duplicate_heads():
    backbone = Backbone(hidden_size=32, vocab_size=10)
    with pytest.raises(ValidationError, match=r"layers\[0\] has no candidates"):
        SearchSpace(backbone=backbone, layers=((),))
    with pytest.raises(ValidationError, match=r"heads=\[2, 2\] lists a head count twice"):
        CandidateSpec(kind="bert", ffn_width=8, max_ffn_width=8, increment=8, heads=(2, 2))


def test_architecture_not_in_space(tiny):
    good = Architecture.from_string("0:B32h2|2:M16/16h4|1:B64h4", tiny.backbone)
    tiny.check(good)
    cases = {
        "0:B32h2|2:M16/16h4": "architecture has 2 layers but space 'tiny' has 3",
        "0:B32h2|9:M16/16h4|1:B64h4": r"layers\[1\]\.candidate=9 is not in the space \(layer 1 has candidates 0\.\.3\)",
        "0:B64h2|2:M16/16h4|1:B64h4": r"layers\[0\]\.ffn_width=64 does not match candidate 0 of the space \(ffn_width=32\)",
        "0:B32h2|2:M16/16h4|2:B16h4": r"layers\[2\]\.kind='bert' does not match candidate 2 of the space \(kind='mobile'\)",
        "0:B32h1|2:M16/16h4|1:B64h4": r"layers\[0\]\.heads=1 is not among candidate 0's head counts \[2, 4\]",
    }
    for text, message in cases.items():
        arch = Architecture.from_string(text, tiny.backbone)
        with pytest.raises(SpaceError, match=message):
            tiny.check(arch)
        assert not tiny.contains(arch)
    other = preset("tiny", vocab_size=101)
    with pytest.raises(SpaceError, match="backbone"):
        other.check(good)


def test_malformed_token():
    with pytest.raises(SpaceError, match="'0-B32h2' is not of the form"):
        LayerChoice.from_token("0-B32h2")


def test_unknown_preset():
    with pytest.raises(KeyError, match="unknown search-space preset 'huge'; known: elm-small"):
        preset("huge")
