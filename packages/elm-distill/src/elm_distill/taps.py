"""Forward hooks that collect distillation features from a model without editing it.

Works on Hugging Face BERT- and GPT-2-style models (bare or wrapped in a task head) and on any
model whose layers sit in one ``nn.ModuleList`` with an attention child per layer:

* embedding output: the first layer's input (``hidden_states[0]`` in Hugging Face terms);
* attention-sublayer output: the output of each layer's attention child. For post-LN BERT that
  is ``BertAttention``'s output, after the residual add and LayerNorm; for pre-LN GPT-2 it is
  ``GPT2Attention``'s output, before the residual add (GPT-2 has no normed point there);
* layer output: each layer's output. For GPT-2 the last one is before the final ``ln_f``, so it
  differs from ``hidden_states[-1]``; all others equal ``hidden_states[i + 1]``;
* optionally each layer's query, key and value projections (separate ``query``/``key``/``value``
  or ``q_proj``/``k_proj``/``v_proj`` linears, or GPT-2's fused ``c_attn`` split in three).

Tensors keep their autograd graph (unless ``detach=True``), so student features can be trained
through. Every forward of the model starts a fresh collection, so taps may stay attached for a
whole training run; leaving the ``with`` block, or :meth:`FeatureTaps.remove`, takes every hook
off again.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from elm_distill.features import Features
from elm_distill.minilm import QKV

ATTENTION_NAMES = ("attention", "attn", "self_attn", "self_attention")
"""Child names tried, in order, for a layer's attention sublayer."""
SEPARATE_QKV_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))
FUSED_QKV_NAMES = ("c_attn",)
"""Fused projections whose output is [query | key | value] along the last dim."""


class TapError(ValueError):
    """The model's layout could not be found, or the collected features are incomplete."""


def _first_tensor(output: Any) -> Tensor:
    """Modules return a tensor or a tuple whose first element is the hidden states."""
    return output[0] if isinstance(output, tuple | list) else output


def find_layers(model: nn.Module, path: str | None = None) -> tuple[str, nn.ModuleList]:
    """The ``nn.ModuleList`` holding the model's layers, by path or by its config's layer count."""
    if path is not None:
        try:
            layers = model.get_submodule(path)
        except AttributeError as error:
            raise TapError(f"layers path {path!r} names no submodule of {type(model).__name__}") from error
        if not isinstance(layers, nn.ModuleList):
            raise TapError(f"layers path {path!r} is a {type(layers).__name__}, not an nn.ModuleList")
        return path, layers
    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if count is None:
        raise TapError(
            f"{type(model).__name__} has no config.num_hidden_layers; pass layers='path.to.ModuleList'"
        )
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return name, module
    raise TapError(
        f"found no nn.ModuleList of {count} layers in {type(model).__name__}; pass layers='path.to.ModuleList'"
    )


def find_attention(layer: nn.Module, name: str | None = None) -> nn.Module:
    """A layer's attention sublayer: the child called ``name``, or the first of ATTENTION_NAMES."""
    for candidate in (name,) if name is not None else ATTENTION_NAMES:
        child = getattr(layer, candidate, None)
        if isinstance(child, nn.Module):
            return child
    tried = name if name is not None else ", ".join(ATTENTION_NAMES)
    raise TapError(f"{type(layer).__name__} has no attention child ({tried}); pass attention='child_name'")


def _find_qkv(attention: nn.Module) -> tuple[nn.Module, ...]:
    """Three projection modules, or one fused module, inside an attention sublayer."""
    by_last_name = {name.rsplit(".", 1)[-1]: module for name, module in attention.named_modules() if name}
    for names in SEPARATE_QKV_NAMES:
        if all(name in by_last_name for name in names):
            return tuple(by_last_name[name] for name in names)
    for name in FUSED_QKV_NAMES:
        if name in by_last_name:
            return (by_last_name[name],)
    raise TapError(f"found no query/key/value projections in {type(attention).__name__}")


class FeatureTaps:
    """Collects :class:`Features` from every forward of ``model`` while attached.

    ``layers`` (a dotted path to the layer ``ModuleList``) and ``attention`` (the attention
    child's name) override the automatic search, for models laid out differently.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        qkv: bool = False,
        detach: bool = False,
        layers: str | None = None,
        attention: str | None = None,
    ) -> None:
        self.detach = detach
        self.layers_path, self._layers = find_layers(model, layers)
        if len(self._layers) == 0:
            raise TapError(f"{self.layers_path!r} holds no layers")
        self._attention = [find_attention(layer, attention) for layer in self._layers]
        self._qkv = [_find_qkv(module) for module in self._attention] if qkv else []
        self._handles: list[RemovableHandle] = []
        self._embeddings: Tensor | None = None
        self._layer_out: dict[int, Tensor] = {}
        self._attention_out: dict[int, Tensor] = {}
        self._qkv_out: tuple[dict[int, Tensor], ...] = ({}, {}, {})
        self._handles.append(model.register_forward_pre_hook(lambda *_: self._reset()))
        self._handles.append(
            self._layers[0].register_forward_pre_hook(self._take_embeddings, with_kwargs=True)
        )
        for index, (layer, module) in enumerate(zip(self._layers, self._attention, strict=True)):
            self._handles.append(layer.register_forward_hook(self._store(self._layer_out, index)))
            self._handles.append(module.register_forward_hook(self._store(self._attention_out, index)))
        for index, projections in enumerate(self._qkv):
            for slot, projection in enumerate(projections):
                self._handles.append(
                    projection.register_forward_hook(self._store(self._qkv_out[slot], index))
                )

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def _reset(self) -> None:
        # Cleared in place: the hooks hold references to these very dicts.
        self._embeddings = None
        for slot in (self._layer_out, self._attention_out, *self._qkv_out):
            slot.clear()

    def _keep(self, tensor: Tensor) -> Tensor:
        return tensor.detach() if self.detach else tensor

    def _take_embeddings(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs.get("hidden_states")
        if isinstance(hidden, Tensor):
            self._embeddings = self._keep(hidden)

    def _store(self, slot: dict[int, Tensor], index: int) -> Callable[[nn.Module, Any, Any], None]:
        # Keyed by layer, not appended: a gradient-checkpointing recompute overwrites, never duplicates.
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            slot[index] = self._keep(_first_tensor(output))

        return hook

    def _ordered(self, slot: dict[int, Tensor], what: str) -> list[Tensor]:
        missing = [index for index in range(self.num_layers) if index not in slot]
        if missing:
            raise TapError(f"no {what} was collected for layers {missing}; did a full forward pass run?")
        return [slot[index] for index in range(self.num_layers)]

    @property
    def features(self) -> Features:
        """The features of the latest forward pass (an error if none has run since attaching)."""
        if self._embeddings is None:
            raise TapError("no forward pass has run through the tapped model yet")
        qkv: list[QKV] = []
        if self._qkv:
            if len(self._qkv[0]) == 3:
                parts = [
                    self._ordered(slot, what)
                    for slot, what in zip(self._qkv_out, ("query", "key", "value"), strict=True)
                ]
                qkv = [QKV(*triple) for triple in zip(*parts, strict=True)]
            else:
                fused = self._ordered(self._qkv_out[0], "fused query/key/value")
                qkv = [QKV(*tensor.chunk(3, dim=-1)) for tensor in fused]
        return Features(
            embeddings=self._embeddings,
            attention=self._ordered(self._attention_out, "attention output"),
            layers=self._ordered(self._layer_out, "layer output"),
            qkv=qkv,
        )

    def remove(self) -> None:
        """Take every hook off the model; collected features stay readable."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.remove()
