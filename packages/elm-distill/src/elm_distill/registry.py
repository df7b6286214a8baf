"""Losses by name, so a config file can name them and users can add their own.

A registered loss is any callable ``fn(student, teacher, mask=None, **params) -> scalar Tensor``;
``params`` are keyword arguments with defaults (a temperature, DIST's beta and gamma, ...). The
registry reads each loss's signature, so a config naming a parameter the loss does not take is
rejected when the config is validated, not half-way through training.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor

from elm_distill.attention import attention_map_kl
from elm_distill.dist import dist_loss
from elm_distill.hidden import hidden_mse, pearson_hidden_loss
from elm_distill.logits import kl_div_loss, logits_mse, soft_cross_entropy
from elm_distill.minilm import minilm_v2_loss, self_relation_loss

LossFn = Callable[..., Tensor]
_POSITIONAL = ("student", "teacher", "mask")


class LossRegistry:
    """A name -> loss-function table."""

    def __init__(self) -> None:
        self._losses: dict[str, LossFn] = {}

    def register(self, name: str, fn: LossFn | None = None, *, overwrite: bool = False) -> Any:
        """Add ``fn`` under ``name``; without ``fn``, return a decorator that does so.

        The function must accept ``(student, teacher, mask)`` as its first three parameters.
        Re-using a name is an error unless ``overwrite`` is set, so a typo cannot silently
        replace a built-in loss.
        """

        def add(function: LossFn) -> LossFn:
            if not name or not isinstance(name, str):
                raise ValueError(f"a loss name must be a non-empty string, got {name!r}")
            if name in self._losses and not overwrite:
                raise ValueError(
                    f"a loss named {name!r} is already registered; pass overwrite=True to replace it"
                )
            parameters = list(inspect.signature(function).parameters)
            if tuple(parameters[:3]) != _POSITIONAL:
                raise TypeError(
                    f"loss {name!r} must take (student, teacher, mask, ...) first, got ({', '.join(parameters)})"
                )
            self._losses[name] = function
            return function

        return add if fn is None else add(fn)

    def unregister(self, name: str) -> LossFn:
        """Remove and return the loss called ``name``."""
        self.get(name)
        return self._losses.pop(name)

    def get(self, name: str) -> LossFn:
        try:
            return self._losses[name]
        except KeyError:
            raise KeyError(f"no loss named {name!r}; registered: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._losses

    def names(self) -> list[str]:
        return sorted(self._losses)

    def parameters(self, name: str) -> dict[str, Any]:
        """The loss's tunable keyword parameters and their defaults (beyond student/teacher/mask)."""
        signature = inspect.signature(self.get(name))
        return {
            key: parameter.default
            for key, parameter in signature.parameters.items()
            if key not in _POSITIONAL and parameter.kind is not inspect.Parameter.VAR_KEYWORD
        }

    def check_params(self, name: str, params: Iterable[str]) -> None:
        """Raise ValueError naming any parameter the loss does not accept."""
        signature = inspect.signature(self.get(name))
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
            return
        known = self.parameters(name)
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(
                f"loss {name!r} takes no parameter(s) {unknown}; it takes {sorted(known) or 'none'}"
            )


LOSSES = LossRegistry()
"""The default registry, holding the built-in losses; the objective looks names up here."""

for _name, _fn in {
    "mse": hidden_mse,
    "pearson": pearson_hidden_loss,
    "attention_kl": attention_map_kl,
    "soft_ce": soft_cross_entropy,
    "kl": kl_div_loss,
    "logits_mse": logits_mse,
    "dist": dist_loss,
    "self_relation": self_relation_loss,
    "minilm": minilm_v2_loss,
}.items():
    LOSSES.register(_name, _fn)


def register_loss(name: str, fn: LossFn | None = None, *, overwrite: bool = False) -> Any:
    """Register a loss in the default registry (usable as a decorator)."""
    return LOSSES.register(name, fn, overwrite=overwrite)


def get_loss(name: str) -> LossFn:
    """Look a loss up in the default registry."""
    return LOSSES.get(name)
