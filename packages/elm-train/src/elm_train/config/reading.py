"""Reading a config file strictly: YAML whose mappings never repeat a key, a mapping at the top, and
pydantic's errors as one line naming each field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from elm_train.config.base import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key written twice in one mapping (the later one would win)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise ValueError(f"line {key_node.start_mark.line + 1}: the key {key!r} is written twice")
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_mapping(path: Path) -> dict[str, Any]:
    """The config fields written in the YAML file ``path``; every error names the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(
            f"{path}: not valid YAML: {str(err).splitlines()[0] if str(err) else err!r}"
        ) from err
    if data is None:
        raise ConfigError(f"{path}: the config file is empty; write 'preset: demo' to run the demo")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    return data


def validation_summary(err: ValidationError) -> str:
    """pydantic's errors on one line each joined by '; ', every one naming its field."""
    parts = []
    for e in err.errors():
        field = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in e["loc"]).lstrip(".")
        message = e["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)
