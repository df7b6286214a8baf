"""The import paths of modules that moved into wings in 0.2, kept for one release (CHANGELOG.md).

``import elm_train.checkpoint`` still works and gives the moved module itself (so an attribute set
on it is seen by its code), with a DeprecationWarning naming the new path. Removed in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType

WINGS = {
    "runtime": (
        "checkpoint", "safe_load", "fsio", "lock", "distributed", "threads", "faults", "metrics",
        "monitor", "precision", "errors",
    ),
    "training": (
        "loop", "engine", "kd", "pca", "batches", "supernet_training", "multitask_training",
        "retraining", "task_distill", "qa_distill", "teacher_training", "global_batch",
    ),
    "search": ("fitness", "searching", "latency_table", "head_choice"),
}  # fmt: skip
MOVED = {
    **{f"elm_train.{m}": f"elm_train.{wing}.{m}" for wing, names in WINGS.items() for m in names},
    "elm_train.pipeline.declarations": "elm_train.pipeline.stages",
}
"""Old module path -> new module path."""


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target}; the old path goes in elm-train 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module is the one already imported under its new path."""


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, _Alias(MOVED[name]))


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
