"""Run configs from YAML files: the user's (``load_config``) and the named presets shipped with the
package (``preset``), which are config files of the same form.

A file may start from a preset with a ``preset: NAME`` key and override any field; the preset's
values and the file's are merged by :func:`~elm_train.config.merge.merge_configs`. The presets
themselves live in ``elm_train/presets/NAME.yaml`` and may start from another preset the same way
(``elm-tiny`` is ``elm-small`` on another space), so a preset file is also a valid ``--config``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from elm_train.config.base import ConfigError
from elm_train.config.merge import merge_configs
from elm_train.config.reading import read_mapping, validation_summary
from elm_train.config.run import RunConfig

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
"""The folder of the shipped presets, one ``NAME.yaml`` each (package data of the wheel)."""

PRESETS: tuple[str, ...] = ("demo", "tiny", "tiny-clm", "demo-clm", "elm-small", "elm-tiny", "elm-micro")
"""The presets' names, in the order the command line lists them; each is a file in ``PRESET_DIR``."""


def load_config(path: str | Path) -> RunConfig:
    """Load a YAML run config; a ``preset:`` key starts from that preset and overrides fields."""
    return _load(Path(path), chain=())


def preset(name: str) -> RunConfig:
    """The named preset, read from its file in ``PRESET_DIR``."""
    return _preset(name, chain=())


def _preset(name: str, chain: tuple[str, ...]) -> RunConfig:
    """``chain``: the presets whose files are being read, each starting from the next (a preset
    that starts from itself, directly or not, is refused rather than recursing without end)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"preset: unknown run preset {name!r}; known: {', '.join(PRESETS)}")
    if name in chain:
        raise ConfigError(f"preset: {' -> '.join((*chain, name))} starts from itself")
    return _load(PRESET_DIR / f"{name}.yaml", chain=(*chain, name))


def _load(path: Path, chain: tuple[str, ...]) -> RunConfig:
    data = read_mapping(path)
    try:
        base = _preset(data.pop("preset"), chain).model_dump(mode="json") if "preset" in data else {}
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    try:
        return RunConfig.model_validate(merge_configs(base, data))
    except ValidationError as err:
        raise ConfigError(f"{path}: {validation_summary(err)}") from err
