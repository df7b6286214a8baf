"""Static ELM models in the Hugging Face style, and the block code the supernet reuses.

One block implementation serves both the static model and the supernet: a block is allocated
with an FFN *capacity* and runs at any ``ffn_width`` up to it by taking the leading rows of the
FFN's first linear layer and the leading columns of its second. A static model allocates exactly
its width (the slices are then the whole tensors); the supernet allocates the candidate's maximum.
Head count is a forward argument too, because heads only change how the attention width is
split. The supernet therefore runs the very same code on the very same numbers as the extracted
static model.

This file is copied next to exported weights for ``trust_remote_code=True`` loading, so it
imports only torch, transformers and its sibling ``configuration_elm``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
import transformers.initialization as hf_init
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import QuestionAnsweringModelOutput
from transformers.utils import ModelOutput

from .configuration_elm import ElmConfig, ElmModelError


class NoNorm(nn.Module):
    """MobileBERT's replacement for LayerNorm: an element-wise scale and shift, no statistics."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, x, self.weight)


class ElmEmbeddings(nn.Module):
    """Token (plain or factorised), position and segment embeddings, then LayerNorm and dropout.

    The factorised embedding looks at neighbouring tokens. A masked model concatenates tokens
    t+1, t, t-1 (as MobileBERT does); a causal model must not see the future, so it concatenates
    t, t-1, t-2 instead. Both are zero-padded at the sequence ends and have the same size.
    """

    def __init__(self, config: ElmConfig) -> None:
        super().__init__()
        hidden, width = config.hidden_size, config.embedding_size
        self.causal = config.is_causal
        self.max_positions = config.max_position_embeddings
        self.word_embeddings = nn.Embedding(config.vocab_size, width)
        self.embedding_transformation = (
            nn.Linear(3 * width, hidden) if config.embedding_kind == "factorized" else None
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        types = config.type_vocab_size
        self.token_type_embeddings = nn.Embedding(types, hidden) if types > 0 else None
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ElmModelError("pass exactly one of input_ids and inputs_embeds")
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        length = x.shape[1]
        if length > self.max_positions:
            raise ElmModelError(f"sequence length {length} is above max_positions={self.max_positions}")
        if self.embedding_transformation is not None:
            before = F.pad(x, (0, 0, 1, 0))[:, :length]
            if self.causal:
                parts = [x, before, F.pad(x, (0, 0, 2, 0))[:, :length]]
            else:
                parts = [F.pad(x, (0, 0, 0, 1))[:, 1:], x, before]
            x = self.embedding_transformation(torch.cat(parts, dim=-1))
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
            x = x + self.token_type_embeddings(token_type_ids)
        elif token_type_ids is not None and bool(token_type_ids.any()):
            raise ElmModelError(
                "token_type_ids has non-zero segments but this model has no segment embeddings"
            )
        if position_ids is None:
            position_ids = torch.arange(length, device=x.device).unsqueeze(0)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


def attention_bias(
    attention_mask: torch.Tensor | None, length: int, causal: bool, dtype: torch.dtype, device: torch.device
) -> torch.Tensor | None:
    """Additive mask [B or 1, 1, T, T or 1]: 0 where a query may attend, the dtype's minimum elsewhere.

    Built once per forward from a [B, T] padding mask (1 = real token). Returns None when nothing
    is masked, which lets SDPA take its unmasked fast path.
    """
    allowed = None
    if attention_mask is not None:
        if attention_mask.dim() != 2:
            raise ElmModelError(
                f"attention_mask must be [batch, seq_len], got shape {tuple(attention_mask.shape)}"
            )
        if not bool(attention_mask.all()):
            allowed = (attention_mask != 0)[:, None, None, :]
    if causal:
        lower = torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]
        allowed = lower if allowed is None else allowed & lower
    if allowed is None:
        return None
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(
        ~allowed, torch.finfo(dtype).min
    )


class AttentionResult(NamedTuple):
    output: torch.Tensor
    probs: torch.Tensor | None
    context: torch.Tensor | None


class ElmAttention(nn.Module):
    """Multi-head self-attention whose Q, K, V read ``input_size`` features and work at ``width``."""

    def __init__(self, input_size: int, width: int, dropout: float) -> None:
        super().__init__()
        self.width = width
        self.query = nn.Linear(input_size, width)
        self.key = nn.Linear(input_size, width)
        self.value = nn.Linear(input_size, width)
        self.output = nn.Linear(width, width)
        self.dropout_p = dropout

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor | None, heads: int, eager: bool, keep_context: bool
    ) -> AttentionResult:
        batch, length, _ = x.shape
        head_dim = self.width // heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, heads, head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        dropout = self.dropout_p if self.training else 0.0
        probs = None
        if eager:
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head_dim)
            if bias is not None:
                scores = scores + bias
            probs = scores.softmax(dim=-1)
            context = torch.matmul(F.dropout(probs, dropout, self.training), v)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
        merged = context.transpose(1, 2).reshape(batch, length, self.width)
        return AttentionResult(self.output(merged), probs, context if keep_context else None)


class ElmFeedForward(nn.Module):
    """Two linear layers allocated at ``capacity`` and run at any width up to it."""

    def __init__(self, size: int, capacity: int, activation: str) -> None:
        super().__init__()
        self.capacity = capacity
        self.dense1 = nn.Linear(size, capacity)
        self.dense2 = nn.Linear(capacity, size)
        self.act = ACT2FN[activation]

    def forward(self, x: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (output, pre-activation); the pre-activation feeds the PCA of the dynamic dimension."""
        if not 0 < width <= self.capacity:
            raise ElmModelError(f"ffn_width={width} is outside 1..{self.capacity} (the allocated capacity)")
        pre = F.linear(x, self.dense1.weight[:width], self.dense1.bias[:width])
        return F.linear(self.act(pre), self.dense2.weight[:, :width], self.dense2.bias), pre


class BlockResult(NamedTuple):
    hidden: torch.Tensor
    attention_output: torch.Tensor
    attention_probs: torch.Tensor | None
    ffn_pre_activation: torch.Tensor
    attention_context: torch.Tensor | None


class ElmBertBlock(nn.Module):
    """Post-LN BERT block: attention, residual, LayerNorm; GELU FFN, residual, LayerNorm."""

    kind = "bert"

    def __init__(self, config: ElmConfig, ffn_capacity: int) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.attention = ElmAttention(hidden, hidden, config.attention_probs_dropout_prob)
        self.attention_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.ffn = ElmFeedForward(hidden, ffn_capacity, config.hidden_act)
        self.ffn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        ffn_width: int,
        heads: int,
        eager: bool,
        keep_context: bool,
    ) -> BlockResult:
        att = self.attention(x, bias, heads, eager, keep_context)
        attended = self.attention_norm(self.dropout(att.output) + x)
        ffn, pre = self.ffn(attended, ffn_width)
        out = self.ffn_norm(self.dropout(ffn) + attended)
        return BlockResult(out, attended, att.probs, pre, att.context)


class ElmMobileBlock(nn.Module):
    """MobileBERT-style bottleneck block; attention and a ReLU FFN work at ``inner_size``.

    Q, K and V read the full-width input, while the attention residual is the bottlenecked
    input; every norm is a NoNorm.
    """

    kind = "mobile"

    def __init__(self, config: ElmConfig, inner_size: int, ffn_capacity: int) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.bottleneck_in = nn.Linear(hidden, inner_size)
        self.attention = ElmAttention(hidden, inner_size, config.attention_probs_dropout_prob)
        self.attention_norm = NoNorm(inner_size)
        self.ffn = ElmFeedForward(inner_size, ffn_capacity, config.mobile_hidden_act)
        self.ffn_norm = NoNorm(inner_size)
        self.bottleneck_out = nn.Linear(inner_size, hidden)
        self.output_norm = NoNorm(hidden)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        ffn_width: int,
        heads: int,
        eager: bool,
        keep_context: bool,
    ) -> BlockResult:
        inner = self.bottleneck_in(x)
        att = self.attention(x, bias, heads, eager, keep_context)
        attended = self.attention_norm(self.dropout(att.output) + inner)
        ffn, pre = self.ffn(attended, ffn_width)
        fed = self.ffn_norm(self.dropout(ffn) + attended)
        out = self.output_norm(self.dropout(self.bottleneck_out(fed)) + x)
        return BlockResult(out, attended, att.probs, pre, att.context)


def make_block(config: ElmConfig, kind: str, inner_size: int | None, ffn_capacity: int) -> nn.Module:
    """A block of ``kind`` whose FFN is allocated at ``ffn_capacity`` (settings from ``config``)."""
    if kind == "bert":
        return ElmBertBlock(config, ffn_capacity)
    if kind == "mobile":
        if inner_size is None:
            raise ElmModelError("a mobile block needs inner_size")
        return ElmMobileBlock(config, inner_size, ffn_capacity)
    raise ElmModelError(f"unknown block kind {kind!r} (expected 'bert' or 'mobile')")


class ElmLMHead(nn.Module):
    """Transform (dense H->D, activation, LayerNorm) and a decoder tied to the token table."""

    def __init__(self, config: ElmConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, decoder_weight: torch.Tensor) -> torch.Tensor:
        return F.linear(self.LayerNorm(self.act(self.dense(hidden))), decoder_weight, self.bias)


class ElmPooler(nn.Module):
    """tanh(dense(h)) of one token per sequence: the first for a masked model, the last real one
    for a causal model (where the first token has seen nothing but itself)."""

    def __init__(self, config: ElmConfig) -> None:
        super().__init__()
        self.causal = config.is_causal
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.causal:
            if attention_mask is None:
                last = torch.full((hidden.shape[0],), hidden.shape[1] - 1, device=hidden.device)
            else:
                last = (attention_mask != 0).long().cumsum(dim=1).argmax(dim=1)
            token = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:
            token = hidden[:, 0]
        return torch.tanh(self.dense(token))


@dataclass
class ElmModelOutput(ModelOutput):
    """Encoder outputs, with what distillation and the dynamic-dimension statistics need.

    last_hidden_state: [B, T, H].
    hidden_states (output_hidden_states): the embedding output and each layer's output, L+1 x [B, T, H].
    attention_outputs (output_hidden_states): each layer's attention sublayer output after its norm,
        [B, T, H] for BERT blocks and [B, T, inner_size] for mobile blocks.
    attentions (output_attentions): attention probabilities per layer, [B, heads, T, T].
    ffn_pre_activations (output_ffn_pre_activations): the FFN's first linear output before the
        activation, per layer, [B, T, ffn_width].
    attention_contexts (output_attention_contexts): softmax(QK)V per head before the output
        projection, per layer, [B, heads, T, head_dim].
    """

    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attention_outputs: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    ffn_pre_activations: tuple[torch.Tensor, ...] | None = None
    attention_contexts: tuple[torch.Tensor, ...] | None = None


@dataclass
class ElmOutputWithLogits(ModelOutput):
    """A head's output: ``loss`` and ``logits`` ahead of the encoder fields of ElmModelOutput.

    logits: masked LM without labels [B, T, V]; masked LM with labels [N, V] for the N positions
    where labels != -100, in row-major (batch, position) order, i.e. ``full[labels != -100]``;
    causal LM [B, T, V]; sequence classification [B, num_labels].
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attention_outputs: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    ffn_pre_activations: tuple[torch.Tensor, ...] | None = None
    attention_contexts: tuple[torch.Tensor, ...] | None = None


@dataclass
class ElmQuestionAnsweringOutput(QuestionAnsweringModelOutput):
    """transformers' question-answering output (``loss``, ``start_logits`` and ``end_logits`` [B, T],
    ``hidden_states``, ``attentions``) with the encoder fields of ElmModelOutput that distillation
    reads (``attention_outputs``, ...)."""

    attention_outputs: tuple[torch.Tensor, ...] | None = None
    ffn_pre_activations: tuple[torch.Tensor, ...] | None = None
    attention_contexts: tuple[torch.Tensor, ...] | None = None


@dataclass(frozen=True)
class OutputRequest:
    """Which optional outputs one forward collects."""

    attentions: bool = False
    hidden_states: bool = False
    ffn_pre_activations: bool = False
    attention_contexts: bool = False
    force_eager: bool = False


def encode(
    embeddings: ElmEmbeddings,
    path: Sequence[tuple[nn.Module, int, int]],
    *,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    request: OutputRequest,
) -> ElmModelOutput:
    """Run the embedding and a path of (block, ffn_width, heads): the forward both models share."""
    hidden = embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
    bias = attention_bias(attention_mask, hidden.shape[1], embeddings.causal, hidden.dtype, hidden.device)
    eager = request.attentions or request.force_eager
    states, attention_outputs, probs, pres, contexts = [hidden], [], [], [], []
    for block, width, heads in path:
        result = block(
            hidden, bias, ffn_width=width, heads=heads, eager=eager, keep_context=request.attention_contexts
        )
        hidden = result.hidden
        states.append(hidden)
        attention_outputs.append(result.attention_output)
        probs.append(result.attention_probs)
        pres.append(result.ffn_pre_activation)
        contexts.append(result.attention_context)
    return ElmModelOutput(
        last_hidden_state=hidden,
        hidden_states=tuple(states) if request.hidden_states else None,
        attention_outputs=tuple(attention_outputs) if request.hidden_states else None,
        attentions=tuple(probs) if request.attentions else None,
        ffn_pre_activations=tuple(pres) if request.ffn_pre_activations else None,
        attention_contexts=tuple(contexts) if request.attention_contexts else None,
    )


def masked_lm_logits(
    head: ElmLMHead, decoder_weight: torch.Tensor, hidden: torch.Tensor, labels: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Logits everywhere without labels; with labels, only where a loss needs them.

    The vocabulary projection dominates small models, so with labels the head runs on the
    labelled positions alone. With no labelled position the loss is a graph-connected zero.
    """
    if labels is None:
        return None, head(hidden, decoder_weight)
    picked = labels != -100
    logits = head(hidden[picked], decoder_weight)
    if logits.shape[0] == 0:
        return logits.sum() * 0.0, logits
    return F.cross_entropy(logits, labels[picked]), logits


def causal_lm_logits(
    head: ElmLMHead, decoder_weight: torch.Tensor, hidden: torch.Tensor, labels: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Logits at every position; the loss predicts token t+1 from position t (labels are not pre-shifted)."""
    logits = head(hidden, decoder_weight)
    if labels is None:
        return None, logits
    shifted = logits[:, :-1].reshape(-1, logits.shape[-1])
    return F.cross_entropy(shifted, labels[:, 1:].reshape(-1), ignore_index=-100), logits


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor | None, num_labels: int, problem_type: str | None
) -> torch.Tensor | None:
    """Regression for one label, else single- or multi-label classification, as transformers infers it."""
    if labels is None:
        return None
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).reshape(logits.shape[0]))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ElmModelError(f"unknown problem_type {problem_type!r}")


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor | None,
    end_positions: torch.Tensor | None,
) -> torch.Tensor | None:
    """The mean of the start and end cross-entropies, as transformers' QA heads compute it: a
    position outside the sequence is clamped to ``T`` and ignored."""
    if start_positions is None and end_positions is None:
        return None
    if start_positions is None or end_positions is None:
        raise ElmModelError("pass both start_positions and end_positions, or neither")
    ignored = start_logits.shape[1]
    starts = start_positions.reshape(-1).clamp(0, ignored)
    ends = end_positions.reshape(-1).clamp(0, ignored)
    start = F.cross_entropy(start_logits, starts, ignore_index=ignored)
    end = F.cross_entropy(end_logits, ends, ignore_index=ignored)
    return (start + end) / 2


def init_elm_weights(module: nn.Module, std: float) -> None:
    """N(0, std) linear and embedding weights, zero biases, unit norms (METHOD.md section 4).

    Uses transformers' guarded init functions, which leave weights that from_pretrained has
    already loaded alone.
    """
    if isinstance(module, nn.Linear):
        hf_init.normal_(module.weight, mean=0.0, std=std)
        hf_init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        hf_init.normal_(module.weight, mean=0.0, std=std)
    elif isinstance(module, nn.LayerNorm | NoNorm):
        hf_init.ones_(module.weight)
        hf_init.zeros_(module.bias)
    elif isinstance(module, ElmLMHead):
        hf_init.zeros_(module.bias)


class ElmPreTrainedModel(PreTrainedModel):
    config_class = ElmConfig
    config: ElmConfig
    base_model_prefix = "elm"
    main_input_name = "input_ids"
    _supports_sdpa = True
    _no_split_modules: ClassVar[list[str]] = ["ElmBertBlock", "ElmMobileBlock"]

    def _init_weights(self, module: nn.Module) -> None:
        init_elm_weights(module, self.config.initializer_range)

    def _request(
        self,
        output_attentions: bool | None,
        output_hidden_states: bool | None,
        output_ffn_pre_activations: bool,
        output_attention_contexts: bool,
    ) -> OutputRequest:
        return OutputRequest(
            attentions=bool(
                self.config.output_attentions if output_attentions is None else output_attentions
            ),
            hidden_states=bool(
                self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
            ),
            ffn_pre_activations=output_ffn_pre_activations,
            attention_contexts=output_attention_contexts,
            force_eager=self.config._attn_implementation == "eager",
        )


class ElmModel(ElmPreTrainedModel):
    """The encoder (embedding and blocks) without a head."""

    _auto_class = "AutoModel"

    def __init__(self, config: ElmConfig) -> None:
        super().__init__(config)
        config.require_architecture()
        self.embeddings = ElmEmbeddings(config)
        self.layers = nn.ModuleList(
            make_block(config, layer["kind"], layer.get("inner_size"), layer["ffn_width"])
            for layer in config.require_architecture()["layers"]
        )
        self.path_settings = [(layer["ffn_width"], layer["heads"]) for layer in config.layers]
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_ffn_pre_activations: bool = False,
        output_attention_contexts: bool = False,
        return_dict: bool | None = None,
    ) -> ElmModelOutput | tuple[torch.Tensor, ...]:
        path = [(block, w, h) for block, (w, h) in zip(self.layers, self.path_settings, strict=True)]
        out = encode(
            self.embeddings,
            path,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            request=self._request(
                output_attentions, output_hidden_states, output_ffn_pre_activations, output_attention_contexts
            ),
        )
        return out if return_dict is not False else out.to_tuple()


def with_logits(
    loss: torch.Tensor | None, logits: torch.Tensor, encoded: ElmModelOutput
) -> ElmOutputWithLogits:
    return ElmOutputWithLogits(
        loss=loss,
        logits=logits,
        hidden_states=encoded.hidden_states,
        attention_outputs=encoded.attention_outputs,
        attentions=encoded.attentions,
        ffn_pre_activations=encoded.ffn_pre_activations,
        attention_contexts=encoded.attention_contexts,
    )


class _ElmWithHead(ElmPreTrainedModel):
    """Shared plumbing of the three head models: run the encoder, then ``_head``."""

    def get_input_embeddings(self) -> nn.Embedding:
        return self.elm.embeddings.word_embeddings

    def _head(
        self, encoded: ElmModelOutput, labels: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> ElmOutputWithLogits:
        raise NotImplementedError

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_ffn_pre_activations: bool = False,
        output_attention_contexts: bool = False,
        return_dict: bool | None = None,
    ) -> ElmOutputWithLogits | tuple[torch.Tensor, ...]:
        encoded = self.elm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            output_ffn_pre_activations=output_ffn_pre_activations,
            output_attention_contexts=output_attention_contexts,
        )
        out = self._head(encoded, labels, attention_mask)
        return out if return_dict is not False else out.to_tuple()


class ElmForMaskedLM(_ElmWithHead):
    """Masked LM. With ``labels``, ``logits`` holds only the labelled positions: [N, V]."""

    _auto_class = "AutoModelForMaskedLM"

    def __init__(self, config: ElmConfig) -> None:
        super().__init__(config)
        if config.require_architecture() and config.is_causal:
            raise ElmModelError(
                "ElmForMaskedLM needs a masked-family architecture; this one is causal (ElmForCausalLM)"
            )
        self.elm = ElmModel(config)
        self.lm_head = ElmLMHead(config)
        self.post_init()

    def _head(
        self, encoded: ElmModelOutput, labels: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> ElmOutputWithLogits:
        weight = self.elm.embeddings.word_embeddings.weight
        loss, logits = masked_lm_logits(self.lm_head, weight, encoded.last_hidden_state, labels)
        return with_logits(loss, logits, encoded)


class ElmForCausalLM(_ElmWithHead):
    """Causal LM; ``labels`` are the input ids themselves (shifted inside)."""

    _auto_class = "AutoModelForCausalLM"

    def __init__(self, config: ElmConfig) -> None:
        super().__init__(config)
        if config.require_architecture() and not config.is_causal:
            raise ElmModelError(
                "ElmForCausalLM needs a causal-family architecture; this one is masked (ElmForMaskedLM)"
            )
        self.elm = ElmModel(config)
        self.lm_head = ElmLMHead(config)
        self.post_init()

    def _head(
        self, encoded: ElmModelOutput, labels: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> ElmOutputWithLogits:
        weight = self.elm.embeddings.word_embeddings.weight
        loss, logits = causal_lm_logits(self.lm_head, weight, encoded.last_hidden_state, labels)
        return with_logits(loss, logits, encoded)


class ElmForSequenceClassification(_ElmWithHead):
    """Pooler and a linear classifier; regression when num_labels == 1 (or problem_type says so)."""

    _auto_class = "AutoModelForSequenceClassification"

    def __init__(self, config: ElmConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.elm = ElmModel(config)
        self.pooler = ElmPooler(config)
        dropout = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _head(
        self, encoded: ElmModelOutput, labels: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> ElmOutputWithLogits:
        pooled = self.pooler(encoded.last_hidden_state, attention_mask)
        logits = self.classifier(self.dropout(pooled))
        loss = classification_loss(logits, labels, self.num_labels, self.config.problem_type)
        return with_logits(loss, logits, encoded)


class ElmForQuestionAnswering(ElmPreTrainedModel):
    """Extractive question answering (SQuAD): a linear layer on every token's last hidden state
    gives its start and end logits, as transformers' ``...ForQuestionAnswering`` heads do; no
    pooler (the reference loads none for SQuAD). With ``start_positions`` and ``end_positions``
    the loss is the mean of the two cross-entropies."""

    _auto_class = "AutoModelForQuestionAnswering"

    def __init__(self, config: ElmConfig) -> None:
        super().__init__(config)
        self.num_labels = 2
        self.elm = ElmModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.elm.embeddings.word_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_ffn_pre_activations: bool = False,
        output_attention_contexts: bool = False,
        return_dict: bool | None = None,
    ) -> ElmQuestionAnsweringOutput | tuple[torch.Tensor, ...]:
        encoded = self.elm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            output_ffn_pre_activations=output_ffn_pre_activations,
            output_attention_contexts=output_attention_contexts,
        )
        start_logits, end_logits = self.qa_outputs(encoded.last_hidden_state).unbind(dim=-1)
        start_logits, end_logits = start_logits.contiguous(), end_logits.contiguous()
        out = ElmQuestionAnsweringOutput(
            loss=span_loss(start_logits, end_logits, start_positions, end_positions),
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
            attention_outputs=encoded.attention_outputs,
            ffn_pre_activations=encoded.ffn_pre_activations,
            attention_contexts=encoded.attention_contexts,
        )
        return out if return_dict is not False else out.to_tuple()


__all__ = [
    "ElmForCausalLM",
    "ElmForMaskedLM",
    "ElmForQuestionAnswering",
    "ElmForSequenceClassification",
    "ElmModel",
    "ElmModelOutput",
    "ElmOutputWithLogits",
    "ElmPreTrainedModel",
    "ElmQuestionAnsweringOutput",
]
