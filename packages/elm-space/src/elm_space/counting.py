"""Exact parameter and FLOP counts by arithmetic.

These numbers are a contract: elm-train's static models must have exactly these parameter
counts (its tests compare against ``sum(p.numel())``), so search can rank millions of
architectures without building one. Every linear layer has a bias, LayerNorm and NoNorm each
have a weight and a bias, and a tied LM decoder shares the token table (counted once).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from elm_space.schema import Architecture, Backbone, BlockKind, LayerChoice, SpaceError, as_int

Head = Literal["none", "masked_lm", "causal_lm", "classification", "question_answering"]
HEADS: tuple[str, ...] = get_args(Head)


def _check_head(head: object, num_labels: object) -> int:
    """SpaceError for an unknown head name or a label count below 1; the label count as an int."""
    if head not in HEADS:
        raise SpaceError(f"head={head!r} is not one of {', '.join(repr(h) for h in HEADS)}")
    labels = as_int(num_labels, "num_labels")
    if labels < 1:
        raise SpaceError(f"num_labels={labels} must be at least 1")
    return labels


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def embedding_params(backbone: Backbone) -> int:
    h = backbone.hidden_size
    side = backbone.max_positions * h + backbone.type_vocab_size * h + 2 * h  # positions, segments, LayerNorm
    if backbone.embedding.kind == "factorized":
        e = backbone.embedding.size or 0
        return backbone.vocab_size * e + _linear(3 * e, h) + side
    return backbone.vocab_size * h + side


def layer_params(choice: LayerChoice, hidden_size: int) -> int:
    h, w = hidden_size, choice.ffn_width
    if choice.kind is BlockKind.BERT:
        attention = 4 * _linear(h, h) + 2 * h
        ffn = _linear(h, w) + _linear(w, h) + 2 * h
        return attention + ffn
    i = choice.inner_size or 0
    bottleneck = _linear(h, i) + _linear(i, h) + 2 * h  # in, out, NoNorm on the residual with x
    attention = 3 * _linear(h, i) + _linear(i, i) + 2 * i  # Q, K, V from the full input; output; NoNorm
    ffn = _linear(i, w) + _linear(w, i) + 2 * i
    return bottleneck + attention + ffn


def head_params(backbone: Backbone, head: Head, num_labels: int = 2) -> int:
    num_labels = _check_head(head, num_labels)
    h, d = backbone.hidden_size, backbone.embedding_width
    if head in ("masked_lm", "causal_lm"):
        # transform (dense H->D, activation, LayerNorm), then the decoder tied to the token table + bias
        return _linear(h, d) + 2 * d + backbone.vocab_size
    if head == "classification":
        return _linear(h, h) + _linear(h, num_labels)  # tanh pooler on the first token, classifier
    if head == "question_answering":
        return _linear(h, 2)  # start and end logits at every token, no pooler
    return 0


class ParamBreakdown(BaseModel):
    model_config = ConfigDict(frozen=True)

    embedding: int
    layers: tuple[int, ...]
    head: int

    @property
    def total(self) -> int:
        return self.embedding + sum(self.layers) + self.head


def param_breakdown(arch: Architecture, head: Head = "none", num_labels: int = 2) -> ParamBreakdown:
    return ParamBreakdown(
        embedding=embedding_params(arch.backbone),
        layers=tuple(layer_params(c, arch.backbone.hidden_size) for c in arch.layers),
        head=head_params(arch.backbone, head, num_labels),
    )


def count_params(arch: Architecture, head: Head = "none", num_labels: int = 2) -> int:
    """Exact parameter count of the static model for ``arch`` with the given head."""
    return param_breakdown(arch, head, num_labels).total


def layer_flops(choice: LayerChoice, hidden_size: int, seq_len: int) -> int:
    """Forward FLOPs of one block on one sequence: 2 per multiply-accumulate, matmuls only.

    Element-wise work (norms, activations, softmax, biases) is left out, as is usual for FLOP
    budgets; it is a few percent at these widths.
    """
    h, w, t = hidden_size, choice.ffn_width, seq_len
    a = choice.attention_width(h)
    scores_and_context = 2 * 2 * t * t * a
    if choice.kind is BlockKind.BERT:
        return 2 * t * 4 * h * h + scores_and_context + 2 * t * 2 * h * w
    i = a
    return 2 * t * (2 * h * i) + 2 * t * (3 * h * i + i * i) + scores_and_context + 2 * t * 2 * i * w


class FlopBreakdown(BaseModel):
    model_config = ConfigDict(frozen=True)

    seq_len: int
    embedding: int
    layers: tuple[int, ...]
    head: int

    @property
    def total(self) -> int:
        return self.embedding + sum(self.layers) + self.head


def flop_breakdown(
    arch: Architecture, seq_len: int, head: Head = "none", num_labels: int = 2
) -> FlopBreakdown:
    num_labels = _check_head(head, num_labels)
    seq_len = as_int(seq_len, "seq_len")
    if seq_len <= 0:
        raise SpaceError(f"seq_len={seq_len} must be positive")
    b, t = arch.backbone, seq_len
    h, d = b.hidden_size, b.embedding_width
    embedding = 2 * t * 3 * d * h if b.embedding.kind == "factorized" else 0
    if head in ("masked_lm", "causal_lm"):
        head_flops = 2 * t * (h * d + d * b.vocab_size)  # logits at every position
    elif head == "classification":
        head_flops = 2 * (h * h + h * num_labels)
    elif head == "question_answering":
        head_flops = 2 * t * h * 2  # start and end logits at every position
    else:
        head_flops = 0
    return FlopBreakdown(
        seq_len=t,
        embedding=embedding,
        layers=tuple(layer_flops(c, h, t) for c in arch.layers),
        head=head_flops,
    )


def count_flops(arch: Architecture, seq_len: int, head: Head = "none", num_labels: int = 2) -> int:
    """Forward FLOPs of one sequence of ``seq_len`` tokens."""
    return flop_breakdown(arch, seq_len, head, num_labels).total
