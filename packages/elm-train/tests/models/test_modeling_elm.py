"""The static models against independent references, invariants, and save/load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
)

import elm_space
from elm_space import BlockKind
from elm_train.models import (
    ElmConfig,
    ElmForCausalLM,
    ElmForMaskedLM,
    ElmForSequenceClassification,
    ElmModel,
    architecture_of,
    elm_config,
)


def _model(cls, arch, perturb, seed=0, **config):
    model = cls(elm_config(arch, **config))
    perturb(model, seed=seed)
    return model.eval()


def test_mobile_block_matches_float64_reference(spaces, uniform_architecture, perturb):
    """The mobile block written out in float64 from the spec (METHOD.md section 1)."""
    arch = uniform_architecture(spaces["tiny"], BlockKind.MOBILE, heads=4)
    model = _model(ElmModel, arch, perturb)
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))
    block = model.layers[0]
    p = {name: t.detach().double() for name, t in block.state_dict().items()}

    def lin(v, name):
        return v @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    def nonorm(v, name):
        return v * p[f"{name}.weight"] + p[f"{name}.bias"]

    xd = x.double()
    inner = lin(xd, "bottleneck_in")
    q, k, v = (lin(xd, f"attention.{n}").view(2, 5, 4, 4).transpose(1, 2) for n in ("query", "key", "value"))
    probs = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)
    context = (probs @ v).transpose(1, 2).reshape(2, 5, 16)
    attended = nonorm(lin(context, "attention.output") + inner, "attention_norm")
    ffn = lin(torch.relu(lin(attended, "ffn.dense1")), "ffn.dense2")
    fed = nonorm(ffn + attended, "ffn_norm")
    expected = nonorm(lin(fed, "bottleneck_out") + xd, "output_norm")

    result = block(x, None, ffn_width=16, heads=4, eager=False, keep_context=True)
    torch.testing.assert_close(result.hidden.double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.attention_output.double(), attended, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.attention_context.double(), (probs @ v), atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["masked", "causal"])
def test_factorised_embedding_matches_reference(spaces, uniform_architecture, perturb, family):
    name = "tiny_factorized" if family == "masked" else "tiny_factorized_causal"
    model = _model(ElmModel, uniform_architecture(spaces[name], BlockKind.BERT, heads=2), perturb)
    emb = model.embeddings
    ids = torch.randint(0, 100, (2, 6), generator=torch.Generator().manual_seed(2))
    table = emb.word_embeddings.weight.detach().double()
    zero = torch.zeros(16, dtype=torch.float64)

    def token(b, t):
        return table[ids[b, t]] if 0 <= t < 6 else zero

    offsets = (1, 0, -1) if family == "masked" else (0, -1, -2)
    rows = [[torch.cat([token(b, t + o) for o in offsets]) for t in range(6)] for b in range(2)]
    stacked = torch.stack([torch.stack(r) for r in rows])
    w = emb.embedding_transformation.weight.detach().double()
    x = stacked @ w.T + emb.embedding_transformation.bias.detach().double()
    x = x + emb.position_embeddings.weight.detach().double()[:6]
    if emb.token_type_embeddings is not None:
        x = x + emb.token_type_embeddings.weight.detach().double()[0]
    x = F.layer_norm(x, (32,), emb.LayerNorm.weight.double(), emb.LayerNorm.bias.double(), eps=1e-5)
    torch.testing.assert_close(emb(ids).double(), x.detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("space_name", ["tiny_causal", "tiny_factorized_causal"])
@pytest.mark.parametrize("kind", [BlockKind.BERT, BlockKind.MOBILE])
def test_causal_model_never_looks_ahead(spaces, uniform_architecture, perturb, space_name, kind):
    model = _model(ElmForCausalLM, uniform_architecture(spaces[space_name], kind, heads=2), perturb)
    ids = torch.randint(1, 100, (2, 10), generator=torch.Generator().manual_seed(3))
    base = model(ids).logits
    for position in (0, 4, 9):
        changed = ids.clone()
        changed[:, position] = (changed[:, position] + 37) % 100
        logits = model(changed).logits
        torch.testing.assert_close(logits[:, :position], base[:, :position], atol=1e-6, rtol=0)
        assert (logits[:, position] - base[:, position]).abs().max() > 1e-4


def test_masked_factorised_model_does_look_ahead(spaces, uniform_architecture, perturb):
    """The counterpart that shows the causality test can fail."""
    model = _model(
        ElmModel, uniform_architecture(spaces["tiny_factorized"], BlockKind.BERT, heads=2), perturb
    )
    ids = torch.randint(1, 100, (1, 8), generator=torch.Generator().manual_seed(3))
    changed = ids.clone()
    changed[0, 5] = (changed[0, 5] + 1) % 100
    assert (model(changed).last_hidden_state[0, 0] - model(ids).last_hidden_state[0, 0]).abs().max() > 1e-4


def test_causal_lm_loss_predicts_the_next_token(spaces, perturb, batch):
    model = _model(ElmForCausalLM, elm_space.sample(spaces["tiny_causal"], 4), perturb)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    out = model(**batch, labels=labels)
    logits = out.logits[:, :-1].reshape(-1, 100)
    targets = labels[:, 1:].reshape(-1)
    keep = targets != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(logits[keep], targets[keep]), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("space_name", ["tiny", "tiny_factorized"])
def test_masked_lm_sparse_logits_equal_full_logits(spaces, perturb, batch, space_name):
    model = _model(ElmForMaskedLM, elm_space.sample(spaces[space_name], 5), perturb)
    labels = torch.full_like(batch["input_ids"], -100)
    picked = torch.tensor([[0, 3], [1, 5], [2, 8], [2, 1]])
    labels[picked[:, 0], picked[:, 1]] = batch["input_ids"][picked[:, 0], picked[:, 1]]
    full = model(**batch).logits
    sparse = model(**batch, labels=labels)
    assert full.shape == (3, 9, 100) and sparse.logits.shape == (4, 100)
    torch.testing.assert_close(sparse.logits, full[labels != -100], atol=1e-5, rtol=0)
    expected = F.cross_entropy(full.reshape(-1, 100), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(sparse.loss, expected, atol=1e-5, rtol=1e-5)
    none = model(**batch, labels=torch.full_like(labels, -100))
    assert none.logits.shape == (0, 100) and none.loss.item() == 0.0


def test_sdpa_and_eager_attention_agree_and_maps_are_masked(spaces, perturb, batch):
    arch = elm_space.sample(spaces["tiny"], 8)
    model = _model(ElmModel, arch, perturb)
    fast = model(**batch)
    slow = model(**batch, output_attentions=True)
    assert fast.attentions is None and len(slow.attentions) == 3
    torch.testing.assert_close(fast.last_hidden_state, slow.last_hidden_state, atol=1e-5, rtol=0)
    for layer, probs in zip(arch.layers, slow.attentions, strict=True):
        assert probs.shape == (3, layer.heads, 9, 9)
        torch.testing.assert_close(probs.sum(-1), torch.ones(3, layer.heads, 9), atol=1e-6, rtol=0)
        assert probs[1, :, :, 6:].abs().max() == 0


def test_padding_does_not_change_real_tokens(spaces, perturb, batch):
    """Padded keys are masked: the pad tokens' ids cannot reach the real positions (plain embedding)."""
    model = _model(ElmModel, elm_space.sample(spaces["tiny"], 9), perturb)
    other = batch["input_ids"].clone()
    other[1, 6:] = 0
    a = model(**batch).last_hidden_state[1, :6]
    b = model(input_ids=other, attention_mask=batch["attention_mask"]).last_hidden_state[1, :6]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_outputs_for_distillation_and_statistics(spaces, perturb, batch):
    arch = elm_space.sample(spaces["tiny_factorized"], 1)
    out = _model(ElmModel, arch, perturb)(
        **batch, output_hidden_states=True, output_ffn_pre_activations=True, output_attention_contexts=True
    )
    assert len(out.hidden_states) == arch.num_layers + 1
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state, atol=0, rtol=0)
    for layer, att, pre, ctx in zip(
        arch.layers, out.attention_outputs, out.ffn_pre_activations, out.attention_contexts, strict=True
    ):
        width = layer.attention_width(32)
        assert att.shape == (3, 9, width)
        assert pre.shape == (3, 9, layer.ffn_width)
        assert ctx.shape == (3, layer.heads, 9, width // layer.heads)


def test_classification_losses(spaces, perturb, batch):
    arch = elm_space.sample(spaces["tiny"], 6)
    single = _model(ElmForSequenceClassification, arch, perturb, num_labels=3)
    labels = torch.tensor([0, 2, 1])
    out = single(**batch, labels=labels)
    assert out.logits.shape == (3, 3)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels), atol=1e-6, rtol=1e-6)
    multi = single(**batch, labels=torch.tensor([[1.0, 0.0, 1.0]] * 3))
    torch.testing.assert_close(
        multi.loss, F.binary_cross_entropy_with_logits(multi.logits, torch.tensor([[1.0, 0.0, 1.0]] * 3))
    )
    regression = _model(ElmForSequenceClassification, arch, perturb, num_labels=1)
    target = torch.tensor([0.1, 0.7, -0.3])
    out = regression(**batch, labels=target)
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits.squeeze(-1), target), atol=1e-6, rtol=1e-6)


def test_causal_classifier_pools_the_last_real_token(spaces, perturb, batch):
    model = _model(ElmForSequenceClassification, elm_space.sample(spaces["tiny_causal"], 2), perturb)
    logits = model(**batch).logits
    trimmed = model(input_ids=batch["input_ids"][1:2, :6]).logits
    torch.testing.assert_close(logits[1:2], trimmed, atol=1e-5, rtol=0)


def test_family_and_head_mismatch_is_a_clear_error(spaces):
    with pytest.raises(ValueError, match="causal"):
        ElmForMaskedLM(elm_config(elm_space.sample(spaces["tiny_causal"], 0)))
    with pytest.raises(ValueError, match="masked"):
        ElmForCausalLM(elm_config(elm_space.sample(spaces["tiny"], 0)))
    with pytest.raises(ValueError, match="no architecture"):
        ElmModel(ElmConfig())
    with pytest.raises(ValueError, match="segment"):
        ElmModel(elm_config(elm_space.sample(spaces["tiny_causal"], 0)))(
            torch.ones(1, 3, dtype=torch.long), token_type_ids=torch.ones(1, 3, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="max_positions=64"):
        ElmModel(elm_config(elm_space.sample(spaces["tiny"], 0)))(torch.ones(1, 65, dtype=torch.long))


@pytest.mark.parametrize(
    ("cls", "auto", "space_name"),
    [
        (ElmModel, AutoModel, "tiny_factorized"),
        (ElmForMaskedLM, AutoModelForMaskedLM, "tiny_factorized"),
        (ElmForCausalLM, AutoModelForCausalLM, "tiny_factorized_causal"),
        (ElmForSequenceClassification, AutoModelForSequenceClassification, "tiny"),
    ],
)
def test_save_and_load_round_trip(tmp_path, spaces, perturb, batch, cls, auto, space_name):
    arch = elm_space.sample(spaces[space_name], 10)
    model = _model(cls, arch, perturb, num_labels=3)
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "modeling_elm.py", "configuration_elm.py"} <= files
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.auto_map["AutoModelForMaskedLM"] == "modeling_elm.ElmForMaskedLM"
    assert architecture_of(config) == arch
    loaded = auto.from_pretrained(tmp_path)
    assert type(loaded) is cls and not loaded.training
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, atol=0, rtol=0)
    field = "last_hidden_state" if cls is ElmModel else "logits"
    torch.testing.assert_close(
        getattr(loaded(**batch), field), getattr(model(**batch), field), atol=0, rtol=0
    )
