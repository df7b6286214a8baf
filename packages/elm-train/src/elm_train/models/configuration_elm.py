"""The ELM model configuration: one architecture plus the training-time settings.

This file is copied next to exported weights and loaded with ``trust_remote_code=True`` in
environments that have only torch and transformers, so it imports nothing of ours: the
architecture is kept as the plain JSON dict that elm-space writes (``Architecture.model_dump``),
and every size the model needs is derived from that dict here.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

ELM_AUTO_MAP = {
    "AutoConfig": "configuration_elm.ElmConfig",
    "AutoModel": "modeling_elm.ElmModel",
    "AutoModelForMaskedLM": "modeling_elm.ElmForMaskedLM",
    "AutoModelForCausalLM": "modeling_elm.ElmForCausalLM",
    "AutoModelForSequenceClassification": "modeling_elm.ElmForSequenceClassification",
    "AutoModelForQuestionAnswering": "modeling_elm.ElmForQuestionAnswering",
}
"""Written into every saved config so that a directory loads by remote code without our packages."""

_KINDS = ("bert", "mobile")


class ElmModelError(ValueError):
    """An ELM model config or call that cannot work (a damaged config.json, a wrong argument).

    Defined here, not in elm_train.runtime.errors, because this file travels alone with exported
    weights; elm-train reports it as bad input like its own errors."""


def _architecture_dict(architecture: Any) -> dict[str, Any] | None:
    """Accept an elm-space ``Architecture`` (anything with ``model_dump``) or its JSON dict."""
    if architecture is None:
        return None
    if hasattr(architecture, "model_dump"):
        architecture = architecture.model_dump(mode="json")
    if not isinstance(architecture, dict):
        raise ElmModelError(
            f"ElmConfig.architecture must be a dict or an Architecture, got {type(architecture).__name__}"
        )
    return architecture


def _check_architecture(arch: dict[str, Any]) -> None:
    """The checks a model build relies on, with errors that name the field (elm-space does the rest)."""
    backbone, layers = arch.get("backbone"), arch.get("layers")
    if not isinstance(backbone, dict) or not isinstance(layers, list | tuple) or not layers:
        raise ElmModelError("ElmConfig.architecture needs a 'backbone' dict and a non-empty 'layers' list")
    for key in ("hidden_size", "vocab_size", "max_positions"):
        if not isinstance(backbone.get(key), int) or backbone[key] <= 0:
            raise ElmModelError(
                f"ElmConfig.architecture.backbone.{key} must be a positive int, got {backbone.get(key)!r}"
            )
    embedding = backbone.get("embedding") or {"kind": "plain"}
    if embedding.get("kind") not in ("plain", "factorized"):
        raise ElmModelError(
            f"ElmConfig.architecture.backbone.embedding.kind={embedding.get('kind')!r} is not plain|factorized"
        )
    if embedding.get("kind") == "factorized" and not embedding.get("size"):
        raise ElmModelError(
            "ElmConfig.architecture.backbone.embedding.size is required for a factorized embedding"
        )
    if backbone.get("family", "masked") not in ("masked", "causal"):
        raise ElmModelError(
            f"ElmConfig.architecture.backbone.family={backbone.get('family')!r} is not masked|causal"
        )
    hidden = backbone["hidden_size"]
    for i, layer in enumerate(layers):
        kind = layer.get("kind")
        if kind not in _KINDS:
            raise ElmModelError(f"ElmConfig.architecture.layers[{i}].kind={kind!r} is not one of {_KINDS}")
        width = hidden if kind == "bert" else layer.get("inner_size")
        if not isinstance(width, int) or width <= 0:
            raise ElmModelError(
                f"ElmConfig.architecture.layers[{i}].inner_size must be a positive int for a mobile block"
            )
        heads, ffn = layer.get("heads"), layer.get("ffn_width")
        if not isinstance(ffn, int) or ffn <= 0:
            raise ElmModelError(
                f"ElmConfig.architecture.layers[{i}].ffn_width must be a positive int, got {ffn!r}"
            )
        if not isinstance(heads, int) or heads <= 0 or width % heads:
            raise ElmModelError(
                f"ElmConfig.architecture.layers[{i}].heads={heads!r} does not divide its attention width {width}"
            )


class ElmConfig(PretrainedConfig):
    """Configuration of a static ELM model.

    ``architecture`` is an elm-space Architecture as a JSON dict: ``backbone`` (family, hidden_size,
    vocab_size, max_positions, type_vocab_size, embedding) and one ``layers`` entry per block
    (kind ``bert``/``mobile``, ffn_width, heads, inner_size). Sizes are read-only properties
    derived from it, so the two can never disagree.
    """

    model_type = "elm"
    _auto_class = "AutoConfig"

    def __init__(
        self,
        architecture: Any = None,
        hidden_act: str = "gelu_pytorch_tanh",
        mobile_hidden_act: str = "relu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        classifier_dropout: float | None = None,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        pad_token_id: int | None = 0,
        tie_word_embeddings: bool = True,
        **kwargs: Any,
    ) -> None:
        self.architecture = _architecture_dict(architecture)
        if self.architecture is not None:
            _check_architecture(self.architecture)
        for name, value in (
            ("hidden_dropout_prob", hidden_dropout_prob),
            ("attention_probs_dropout_prob", attention_probs_dropout_prob),
            ("classifier_dropout", 0.0 if classifier_dropout is None else classifier_dropout),
        ):
            if not 0.0 <= float(value) < 1.0:
                raise ElmModelError(f"ElmConfig.{name}={value} must be in [0, 1)")
        if layer_norm_eps <= 0 or initializer_range <= 0:
            raise ElmModelError(
                f"ElmConfig.layer_norm_eps={layer_norm_eps} and initializer_range={initializer_range} must be > 0"
            )
        self.hidden_act = hidden_act
        self.mobile_hidden_act = mobile_hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.classifier_dropout = classifier_dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.pad_token_id = pad_token_id
        self.tie_word_embeddings = tie_word_embeddings
        kwargs["auto_map"] = dict(ELM_AUTO_MAP)
        super().__init__(**kwargs)

    def require_architecture(self) -> dict[str, Any]:
        """The architecture dict; a clear error for a config built without one."""
        if self.architecture is None:
            raise ElmModelError(
                "this ElmConfig has no architecture; build it with ElmConfig(architecture=...)"
            )
        return self.architecture

    # Sizes read None on an architecture-less config: transformers builds and inspects default
    # configs (``ElmConfig()``) and must not fail there.
    @property
    def backbone(self) -> dict[str, Any]:
        return (self.architecture or {}).get("backbone", {})

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list((self.architecture or {}).get("layers", []))

    @property
    def family(self) -> str:
        return self.backbone.get("family", "masked")

    @property
    def is_causal(self) -> bool:
        return self.family == "causal"

    @property
    def hidden_size(self) -> int | None:
        return self.backbone.get("hidden_size")

    @property
    def vocab_size(self) -> int | None:
        return self.backbone.get("vocab_size")

    @property
    def max_position_embeddings(self) -> int | None:
        return self.backbone.get("max_positions")

    @property
    def type_vocab_size(self) -> int:
        return self.backbone.get("type_vocab_size", 2)

    @property
    def num_hidden_layers(self) -> int:
        return len(self.layers)

    @property
    def embedding_kind(self) -> str:
        return (self.backbone.get("embedding") or {}).get("kind", "plain")

    @property
    def embedding_size(self) -> int | None:
        """Width of the token table (and of the tied LM decoder)."""
        embedding = self.backbone.get("embedding") or {}
        return embedding["size"] if embedding.get("kind") == "factorized" else self.hidden_size


__all__ = ["ELM_AUTO_MAP", "ElmConfig"]
