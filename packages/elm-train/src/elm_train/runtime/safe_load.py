"""Loading DeepSpeed's checkpoint files without executing code from them.

DeepSpeed stores optimizer, scheduler and engine state with ``torch.save`` and reads it back with
``torch.load(..., weights_only=False)``, i.e. full unpickling: a crafted ``*.pt`` file in a run
directory runs whatever its ``__reduce__`` says when the run is resumed. :func:`install` replaces
the ``load`` of an engine's checkpoint engine by :func:`safe_torch_load`, which unpickles with
``weights_only=True``: tensors, containers, numbers and strings, plus the handful of DeepSpeed
classes its ZeRO 0-3 checkpoints hold as plain data (:data:`SAFE_GLOBALS`). Anything else is
refused with :class:`~elm_train.runtime.checkpoint.UnsafeCheckpointError` before it is constructed, so a
payload never runs. DeepSpeed's own files are written unchanged (the same format, readable by
DeepSpeed's tools).
"""

from __future__ import annotations

import importlib
import pickle
from typing import Any

import torch

from elm_train.runtime.errors import CheckpointError, UnsafeCheckpointError

SAFE_GLOBALS = (
    ("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
    ("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler"),
    ("deepspeed.runtime.zero.config", "ZeroStageEnum"),
    ("deepspeed.utils.tensor_fragment", "fragment_address"),
)
"""(module, name) of the DeepSpeed classes found in its ZeRO 0-3 checkpoints (fp32, bf16, fp16):
plain data (an enum, a dataclass, loss-scale counters), rebuilt without calling any code of theirs
beyond ``__new__`` and attribute assignment."""


def safe_globals() -> list[Any]:
    found = []
    for module, name in SAFE_GLOBALS:
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):  # another DeepSpeed version: one class fewer allowed
            continue
    return found


def safe_torch_load(path: str, map_location: Any = None) -> Any:
    """``torch.load`` that refuses anything but tensors, plain data and :data:`SAFE_GLOBALS`."""

    try:
        with torch.serialization.safe_globals(safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsafeCheckpointError(
            f"refused to load {path}: it holds objects that are not plain tensors or data "
            f"({first}). Loading it would execute code from the run directory; it was not loaded. "
            "If you did not put it there, the run directory has been tampered with."
        ) from None


def install(engine: Any) -> None:
    """Make ``engine`` (a DeepSpeedEngine) read its checkpoints through :func:`safe_torch_load`."""
    from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

    if getattr(engine, "load_universal_checkpoint", lambda: False)():
        raise CheckpointError(
            "DeepSpeed universal checkpoints are loaded with full unpickling; they are not supported"
        )
    ce = engine.checkpoint_engine
    if getattr(ce, "_elm_safe_load", False):
        return
    if not isinstance(ce, TorchCheckpointEngine):
        raise CheckpointError(
            f"DeepSpeed checkpoint engine {type(ce).__name__} is not supported: only the torch "
            "checkpoint engine can be made to load without unpickling arbitrary objects"
        )
    ce.load = safe_torch_load
    ce._elm_safe_load = True
