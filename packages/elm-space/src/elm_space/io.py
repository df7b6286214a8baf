"""JSON and YAML round-trip for spaces and architectures (chosen by file suffix)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from elm_space.schema import SpaceError, SpaceFileNotFoundError, describe_validation_error

M = TypeVar("M", bound=BaseModel)
FORMATS = ("json", "yaml")
_PARSE_ERRORS = (yaml.YAMLError, ValueError, TypeError, IndexError, KeyError, OverflowError)


def _check_fmt(fmt: str) -> str:
    if fmt not in FORMATS:
        raise SpaceError(f"format {fmt!r} is not 'json' or 'yaml'")
    return fmt


def dumps(model: BaseModel, fmt: str = "json") -> str:
    data = model.model_dump(mode="json")
    if _check_fmt(fmt) == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    return yaml.safe_dump(data, sort_keys=True)


def loads(cls: type[M], text: str, fmt: str = "json") -> M:
    """Parse and validate; SpaceError (one line, naming the field) for bad text or content."""
    _check_fmt(fmt)
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            raise SpaceError(f"not UTF-8 text (byte {text[err.start]:#04x} at offset {err.start})") from None
    if not isinstance(text, str):
        raise SpaceError(f"expected the {fmt.upper()} text as a str, got {type(text).__name__}")
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except RecursionError:
        raise SpaceError(f"not valid {fmt.upper()}: nested too deeply") from None
    except _PARSE_ERRORS as err:
        # PyYAML's constructors raise bare ValueError/IndexError/... for a malformed explicit tag
        # (``!!int ''``); the parser is the only code inside this try.
        detail = " ".join(str(err).split()) or type(err).__name__
        raise SpaceError(f"not valid {fmt.upper()}: {detail}") from None
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise SpaceError(f"invalid {cls.__name__}: {describe_validation_error(err)}") from None


def _fmt(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise SpaceError(f"{path}: unknown suffix {suffix!r}; use .json, .yaml or .yml")


def save(model: BaseModel, path: str | Path) -> Path:
    path = Path(path)
    text = dumps(model, _fmt(path))
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise SpaceError(f"{path}: cannot write: {err.strerror or err}") from None
    return path


def load(cls: type[M], path: str | Path) -> M:
    """Load and validate; errors (SpaceError, one line) name the file as well as the field."""
    path = Path(path)
    if not path.exists():
        raise SpaceFileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise SpaceError(f"{path}: not a file")
    fmt = _fmt(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SpaceError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SpaceError(
            f"{path}, line {line}: not UTF-8 text (byte {raw[err.start]:#04x}); is it a {fmt.upper()} file?"
        ) from None
    try:
        return loads(cls, text, fmt)
    except SpaceError as err:
        raise SpaceError(f"{path}: {err}") from None
