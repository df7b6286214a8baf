"""Plain-BERT architectures equal transformers' own BERT classes, by hand-copied weights and by export."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertLMHeadModel,
    BertModel,
)

import elm_space
from elm_space import BlockKind
from elm_train.models import (
    ElmForCausalLM,
    ElmForMaskedLM,
    ElmForSequenceClassification,
    ElmModel,
    bert_export_problem,
    elm_config,
    export_bert,
    to_bert,
)


def test_static_bert_equals_transformers_bert_with_copied_weights(
    spaces, uniform_architecture, perturb, batch
):
    arch = uniform_architecture(spaces["tiny"], BlockKind.BERT, heads=4)
    model = ElmModel(elm_config(arch))
    perturb(model)
    model.eval()
    bert = BertModel(
        BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            intermediate_size=32,
            hidden_act="gelu_pytorch_tanh",
            max_position_embeddings=64,
            type_vocab_size=2,
            layer_norm_eps=1e-5,
        ),
        add_pooling_layer=False,
    ).eval()
    ours = model.state_dict()
    with torch.no_grad():
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            getattr(bert.embeddings, name).weight.copy_(ours[f"embeddings.{name}.weight"])
        bert.embeddings.LayerNorm.load_state_dict(model.embeddings.LayerNorm.state_dict())
        for theirs, mine in zip(bert.encoder.layer, model.layers, strict=True):
            theirs.attention.self.query.load_state_dict(mine.attention.query.state_dict())
            theirs.attention.self.key.load_state_dict(mine.attention.key.state_dict())
            theirs.attention.self.value.load_state_dict(mine.attention.value.state_dict())
            theirs.attention.output.dense.load_state_dict(mine.attention.output.state_dict())
            theirs.attention.output.LayerNorm.load_state_dict(mine.attention_norm.state_dict())
            theirs.intermediate.dense.load_state_dict(mine.ffn.dense1.state_dict())
            theirs.output.dense.load_state_dict(mine.ffn.dense2.state_dict())
            theirs.output.LayerNorm.load_state_dict(mine.ffn_norm.state_dict())
    token_types = torch.zeros_like(batch["input_ids"])
    token_types[:, 5:] = 1
    expected = bert(**batch, token_type_ids=token_types).last_hidden_state
    got = model(**batch, token_type_ids=token_types).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("cls", "bert_cls", "auto", "space_name"),
    [
        (ElmModel, BertModel, AutoModel, "tiny"),
        (ElmForMaskedLM, BertForMaskedLM, AutoModelForMaskedLM, "tiny"),
        (
            ElmForSequenceClassification,
            BertForSequenceClassification,
            AutoModelForSequenceClassification,
            "tiny",
        ),
        (ElmForCausalLM, BertLMHeadModel, AutoModelForCausalLM, "tiny_causal"),
    ],
)
def test_export_route_gives_identical_outputs(
    tmp_path, spaces, uniform_architecture, perturb, batch, cls, bert_cls, auto, space_name
):
    arch = uniform_architecture(spaces[space_name], BlockKind.BERT, heads=2)
    model = cls(elm_config(arch, num_labels=3))
    perturb(model, seed=4)
    model.eval()
    export_bert(model, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not (tmp_path / "modeling_elm.py").exists()
    loaded = auto.from_pretrained(tmp_path).eval()
    assert type(loaded) is bert_cls
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    kwargs = (
        {}
        if cls is ElmModel
        else {"labels": torch.tensor([0, 2, 1]) if cls is ElmForSequenceClassification else None}
    )
    ours, theirs = model(**batch, **kwargs), loaded(**batch, **kwargs)
    real = batch["attention_mask"].bool()
    if cls is ElmModel:
        torch.testing.assert_close(
            ours.last_hidden_state[real], theirs.last_hidden_state[real], atol=1e-5, rtol=0
        )
    elif cls is ElmForSequenceClassification:
        torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(ours.logits[real], theirs.logits[real], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            model(**batch, labels=labels).loss, loaded(**batch, labels=labels).loss, atol=1e-5, rtol=1e-5
        )


def test_only_plain_bert_architectures_export(spaces, uniform_architecture):
    assert bert_export_problem(elm_config(uniform_architecture(spaces["tiny"], BlockKind.BERT, 2))) is None
    mobile = elm_config(uniform_architecture(spaces["tiny"], BlockKind.MOBILE, 2))
    assert "mobile" in bert_export_problem(mobile)
    factorised = elm_config(uniform_architecture(spaces["tiny_factorized"], BlockKind.BERT, 2))
    assert "factorised" in bert_export_problem(factorised)
    arch = uniform_architecture(spaces["tiny"], BlockKind.BERT, 2)
    mixed = arch.with_heads([2, 4, 2])
    assert "head counts" in bert_export_problem(elm_config(mixed))
    wider = spaces["tiny"].architecture([arch.layers[0], spaces["tiny"].options(1)[2], arch.layers[2]])
    assert "FFN widths" in bert_export_problem(elm_config(wider))
    with pytest.raises(ValueError, match="mobile"):
        to_bert(ElmModel(mobile))


def test_causal_classifier_does_not_export(spaces, uniform_architecture):
    arch = uniform_architecture(spaces["tiny_causal"], BlockKind.BERT, 2)
    with pytest.raises(ValueError, match="last token"):
        to_bert(ElmForSequenceClassification(elm_config(arch)))
    assert elm_space.count_params(arch, head="causal_lm") == sum(
        p.numel() for p in ElmForCausalLM(elm_config(arch)).parameters()
    )
