"""Feature taps on real transformers BERT and GPT-2 models built from tiny configs (no download)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Model,
)

from elm_distill import FeatureTaps, TapError

LAYERS = 3


def bert_config() -> BertConfig:
    return BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=24
    )


def gpt2_config() -> GPT2Config:
    return GPT2Config(
        vocab_size=60, n_embd=16, n_layer=LAYERS, n_head=2, n_positions=32, bos_token_id=0, eos_token_id=0
    )


@pytest.fixture(scope="module")
def bert() -> BertModel:
    torch.manual_seed(0)
    return BertModel(bert_config()).eval()


@pytest.fixture(scope="module")
def gpt2() -> GPT2Model:
    torch.manual_seed(0)
    return GPT2Model(gpt2_config()).eval()


@pytest.fixture
def batch(mask) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 60, mask.shape, generator=torch.Generator().manual_seed(7))
    return {"input_ids": ids, "attention_mask": mask}


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_bert_taps_coincide_with_hidden_states(bert, batch) -> None:
    with FeatureTaps(bert) as taps:
        out = bert(**batch, output_hidden_states=True)
    features = taps.features
    assert torch.equal(features.embeddings, out.hidden_states[0])
    assert len(features.layers) == len(features.attention) == LAYERS
    for layer, expected in zip(features.layers, out.hidden_states[1:], strict=True):
        assert torch.equal(layer, expected)


def test_bert_attention_tap_is_the_normed_attention_sublayer_output(bert, batch) -> None:
    """The layer output must follow from the tapped attention output through the FFN sublayer alone."""
    with FeatureTaps(bert) as taps:
        out = bert(**batch, output_hidden_states=True)
    for index, layer in enumerate(bert.encoder.layer):
        attention = taps.features.attention[index]
        rebuilt = layer.output(layer.intermediate(attention), attention)
        torch.testing.assert_close(rebuilt, out.hidden_states[index + 1])


def test_bert_qkv_taps_are_the_projections(bert, batch) -> None:
    with FeatureTaps(bert, qkv=True) as taps:
        out = bert(**batch, output_hidden_states=True)
    for index, layer in enumerate(bert.encoder.layer):
        inputs = out.hidden_states[index]
        q, k, v = taps.features.qkv[index]
        self_attention = layer.attention.self
        torch.testing.assert_close(q, self_attention.query(inputs))
        torch.testing.assert_close(k, self_attention.key(inputs))
        torch.testing.assert_close(v, self_attention.value(inputs))


def test_gpt2_taps_coincide_with_hidden_states(gpt2, batch) -> None:
    with FeatureTaps(gpt2) as taps:
        out = gpt2(**batch, output_hidden_states=True)
    features = taps.features
    assert torch.equal(features.embeddings, out.hidden_states[0])
    # every layer output but the last equals hidden_states[i + 1]; the last gets ln_f on top.
    for index in range(LAYERS - 1):
        assert torch.equal(features.layers[index], out.hidden_states[index + 1])
    torch.testing.assert_close(gpt2.ln_f(features.layers[-1]), out.hidden_states[-1])


def test_gpt2_attention_tap_is_the_attention_block_output(gpt2, batch) -> None:
    """Pre-LN GPT-2: layer output = h + a + mlp(ln_2(h + a)) with a the tapped attention output."""
    with FeatureTaps(gpt2, qkv=True) as taps:
        out = gpt2(**batch, output_hidden_states=True)
    for index, block in enumerate(gpt2.h):
        inputs = out.hidden_states[index]
        residual = inputs + taps.features.attention[index]
        torch.testing.assert_close(residual + block.mlp(block.ln_2(residual)), taps.features.layers[index])
        fused = block.attn.c_attn(block.ln_1(inputs))
        torch.testing.assert_close(torch.cat(tuple(taps.features.qkv[index]), dim=-1), fused)


@pytest.mark.parametrize(
    "build", [lambda: BertForSequenceClassification(bert_config()), lambda: GPT2LMHeadModel(gpt2_config())]
)
def test_wrapped_models_are_found(build, batch) -> None:
    model = build().eval()
    with FeatureTaps(model) as taps:
        model(**batch)
    assert taps.layers_path in ("bert.encoder.layer", "transformer.h")
    assert len(taps.features.layers) == LAYERS


def test_hooks_come_off_and_outputs_are_unchanged(bert, batch) -> None:
    plain = bert(**batch).last_hidden_state  # lets HF install its own hooks first
    before = hook_count(bert)
    with FeatureTaps(bert, qkv=True) as taps:
        assert hook_count(bert) > before
        tapped = bert(**batch).last_hidden_state
    assert hook_count(bert) == before
    assert torch.equal(plain, tapped)
    assert taps.features.layers[-1].shape == (3, 7, 16)  # still readable after removal


def test_each_forward_starts_a_fresh_collection(bert, batch) -> None:
    taps = FeatureTaps(bert)
    try:
        bert(**batch)
        first = taps.features.layers[0]
        other = {**batch, "input_ids": (batch["input_ids"] + 1) % 60}
        out = bert(**other, output_hidden_states=True)
        assert torch.equal(taps.features.layers[0], out.hidden_states[1])
        assert not torch.equal(taps.features.layers[0], first)
    finally:
        taps.remove()


def test_student_features_carry_gradients_and_detach_drops_them(batch) -> None:
    torch.manual_seed(1)
    student = BertModel(bert_config())
    with FeatureTaps(student) as taps:
        student(**batch)
    taps.features.attention[1].sum().backward()
    grad = student.encoder.layer[0].attention.self.query.weight.grad
    assert grad is not None and torch.count_nonzero(grad) > 0
    with FeatureTaps(student, detach=True) as taps:
        student(**batch)
    assert not taps.features.layers[0].requires_grad


def test_errors_are_explained(bert) -> None:
    with pytest.raises(TapError, match="no config.num_hidden_layers"):
        FeatureTaps(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(TapError, match="names no submodule"):
        FeatureTaps(bert, layers="encoder.blocks")
    with pytest.raises(TapError, match="no attention child"):
        FeatureTaps(bert, attention="mixer")
    with FeatureTaps(bert) as taps, pytest.raises(TapError, match="no forward pass"):
        _ = taps.features


def test_explicit_paths_for_a_custom_layout(batch) -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mixer = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.mixer(x)

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([Block(), Block()])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                x = block(x)
            return x

    model = Tiny()
    x = torch.randn(2, 3, 4)
    with FeatureTaps(model, layers="blocks", attention="mixer") as taps:
        y = model(x)
    assert torch.equal(taps.features.embeddings, x)
    assert torch.equal(taps.features.layers[-1], y)
    torch.testing.assert_close(taps.features.attention[0], model.blocks[0].mixer(x))
