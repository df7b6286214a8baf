"""Laying one config's fields over another's, and listing where two configs differ."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elm_train.config.run import RunConfig

WHOLE_VALUES = frozenset({"options", "logits_params", "space_overrides"})
"""Free-form mappings that a config replaces whole instead of merging field by field: an
algorithm's options, say, belong to one algorithm, so another algorithm's must not leak in."""


def merge_configs(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update``'s fields laid over it, nested sections merged field by field."""
    out = dict(base)
    for key, value in update.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict) and key not in WHOLE_VALUES
        out[key] = merge_configs(out[key], value) if nested else value
    return out


def diff_configs(old: RunConfig, new: RunConfig) -> list[str]:
    """Dotted paths whose values differ, for refusing a resume with another config."""
    out: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        elif a != b:
            out.append(f"{prefix}: {a!r} -> {b!r}")

    walk(old.model_dump(mode="json"), new.model_dump(mode="json"), "")
    return out
