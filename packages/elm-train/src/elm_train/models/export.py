"""Export of plain-BERT-shaped ELM models to stock transformers BERT classes.

An architecture whose blocks are all BERT blocks of one FFN width and one head count, with a
plain embedding, *is* a BERT model, so it can ship as a checkpoint that needs no custom code.
The causal family exports as ``BertLMHeadModel`` with ``is_decoder=True``: GPT-2 is pre-LN and
cannot hold a post-LN model exactly, while a decoder BERT is the same post-LN computation with a
causal mask. A model without segment embeddings (type_vocab_size 0) exports with a single all-zero
segment row, which BERT always adds: outputs are identical, the BERT has H more parameters.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertLMHeadModel,
    BertModel,
    PreTrainedModel,
)

from elm_train.models.configuration_elm import ElmConfig
from elm_train.models.modeling_elm import (
    ElmForCausalLM,
    ElmForMaskedLM,
    ElmForQuestionAnswering,
    ElmForSequenceClassification,
    ElmModel,
    ElmPreTrainedModel,
)
from elm_train.runtime.errors import ElmTrainError

_LAYER_NAMES = {
    "attention.query": "attention.self.query",
    "attention.key": "attention.self.key",
    "attention.value": "attention.self.value",
    "attention.output": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "ffn.dense1": "intermediate.dense",
    "ffn.dense2": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
_HEAD_NAMES = {
    "lm_head.dense": "cls.predictions.transform.dense",
    "lm_head.LayerNorm": "cls.predictions.transform.LayerNorm",
    "pooler.dense": "bert.pooler.dense",
    "classifier": "classifier",
    "qa_outputs": "qa_outputs",
}


def bert_export_problem(config: ElmConfig) -> str | None:
    """Why ``config`` cannot be exported as a plain BERT, or None when it can."""
    layers = config.layers
    if config.embedding_kind != "plain":
        return "the embedding is factorised (BERT has a plain token table)"
    if any(layer["kind"] != "bert" for layer in layers):
        return "some blocks are mobile blocks"
    if len({layer["ffn_width"] for layer in layers}) != 1:
        return "the FFN widths differ between layers"
    if len({layer["heads"] for layer in layers}) != 1:
        return "the head counts differ between layers"
    return None


def bert_config(config: ElmConfig) -> BertConfig:
    """The BertConfig holding the same model as ``config`` (see bert_export_problem)."""
    problem = bert_export_problem(config)
    if problem is not None:
        raise ElmTrainError(f"cannot export as plain BERT: {problem}")
    first = config.layers[0]
    return BertConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=first["heads"],
        intermediate_size=first["ffn_width"],
        hidden_act=config.hidden_act,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=max(1, config.type_vocab_size),
        initializer_range=config.initializer_range,
        layer_norm_eps=config.layer_norm_eps,
        pad_token_id=config.pad_token_id,
        classifier_dropout=config.classifier_dropout,
        is_decoder=config.is_causal,
        id2label=config.id2label,
        label2id=config.label2id,
        problem_type=config.problem_type,
    )


def _bert_state(model: ElmPreTrainedModel) -> dict[str, torch.Tensor]:
    encoder = model if isinstance(model, ElmModel) else model.elm
    prefix = "" if isinstance(model, ElmModel) else "bert."
    state: dict[str, torch.Tensor] = {}
    for name, tensor in encoder.state_dict().items():
        if name.startswith("embeddings."):
            state[prefix + name] = tensor
            continue
        _, index, rest = name.split(".", 2)
        module, leaf = rest.rsplit(".", 1)
        state[f"{prefix}encoder.layer.{index}.{_LAYER_NAMES[module]}.{leaf}"] = tensor
    if encoder.embeddings.token_type_embeddings is None:
        state[prefix + "embeddings.token_type_embeddings.weight"] = torch.zeros(1, model.config.hidden_size)
    heads = {} if isinstance(model, ElmModel) else model.state_dict()
    for name, tensor in heads.items():
        if name == "lm_head.bias":
            state["cls.predictions.bias"] = tensor
        elif not name.startswith("elm."):
            module, leaf = name.rsplit(".", 1)
            state[f"{_HEAD_NAMES[module]}.{leaf}"] = tensor
    return state


def to_bert(model: ElmPreTrainedModel) -> PreTrainedModel:
    """A stock transformers BERT with ``model``'s weights and outputs.

    ElmModel -> BertModel (no pooler), ElmForMaskedLM -> BertForMaskedLM, ElmForCausalLM ->
    BertLMHeadModel (is_decoder), ElmForSequenceClassification (masked family) ->
    BertForSequenceClassification, ElmForQuestionAnswering -> BertForQuestionAnswering. The result
    is in eval mode.
    """
    config = bert_config(model.config)
    if isinstance(model, ElmModel):
        bert: PreTrainedModel = BertModel(config, add_pooling_layer=False)
    elif isinstance(model, ElmForMaskedLM):
        bert = BertForMaskedLM(config)
    elif isinstance(model, ElmForCausalLM):
        bert = BertLMHeadModel(config)
    elif isinstance(model, ElmForSequenceClassification):
        if model.config.is_causal:
            raise ValueError(
                "a causal classifier pools the last token; BERT pools the first, so it cannot be exported"
            )
        bert = BertForSequenceClassification(config)
    elif isinstance(model, ElmForQuestionAnswering):
        if model.config.is_causal:
            raise ElmTrainError("a causal question-answering model has no BERT counterpart to export to")
        bert = BertForQuestionAnswering(config)  # BERT's QA head has no pooler either
    else:
        raise TypeError(f"cannot export {type(model).__name__} as BERT")
    state = _bert_state(model)
    missing, unexpected = bert.load_state_dict(state, strict=False)
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"BERT export mapping is incomplete: missing {missing}, unexpected {unexpected}")
    if "cls.predictions.decoder.weight" in missing:
        bert.tie_weights()
    return bert.eval()


def export_bert(model: ElmPreTrainedModel, directory: str | Path) -> Path:
    """Save ``to_bert(model)`` with safetensors; the directory loads with plain transformers."""
    directory = Path(directory)
    to_bert(model).save_pretrained(directory)
    return directory
