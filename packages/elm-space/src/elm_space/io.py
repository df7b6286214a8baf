"""JSON and YAML round-trip for spaces and architectures (chosen by file suffix)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from elm_space.schema import SpaceError

M = TypeVar("M", bound=BaseModel)


def dumps(model: BaseModel, fmt: str = "json") -> str:
    data = model.model_dump(mode="json")
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=True)
    raise ValueError(f"format {fmt!r} is not 'json' or 'yaml'")


def loads(cls: type[M], text: str, fmt: str = "json") -> M:
    data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    return cls.model_validate(data)


def _fmt(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise SpaceError(f"{path}: unknown suffix {suffix!r}; use .json, .yaml or .yml")


def save(model: BaseModel, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(dumps(model, _fmt(path)))
    return path


def load(cls: type[M], path: str | Path) -> M:
    """Load and validate; errors name the file as well as the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return loads(cls, path.read_text(), _fmt(path))
    except ValidationError as err:
        raise SpaceError(f"{path}: invalid {cls.__name__}:\n{err}") from err
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise SpaceError(f"{path}: not valid {_fmt(path).upper()}: {err}") from err
