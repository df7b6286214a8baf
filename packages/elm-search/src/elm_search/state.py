"""The resumable state of a search, written atomically after every generation.

Everything a run's future depends on is here: the records (which fix the cache and the
parents), the RNG state and the generation counter. A run resumed from this file therefore
makes the same choices an uninterrupted run would have made.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from elm_search.result import EvaluatedArchitecture, GenerationSummary, ObjectiveSpec
from elm_space import SearchSpace

FORMAT_VERSION = 1


class SearchStateError(ValueError):
    """A state file that cannot be read, or that belongs to a different search."""


class SearchState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    algorithm: str
    config: dict[str, Any]
    space: SearchSpace
    objectives: tuple[ObjectiveSpec, ...]
    constraints: list[dict[str, Any]]
    generation: int = 0
    """Number of completed generations."""
    rng_state: list[Any]
    records: list[EvaluatedArchitecture] = []
    generations: list[GenerationSummary] = []
    parents: list[str] = []
    """Hashes of the current parent pool (the evolutionary population's elite)."""
    pending: dict[str, dict[str, float]] = {}
    """Objective values computed in a generation that did not complete (the run was stopped
    or failed mid-generation); the resumed run takes them instead of evaluating again."""
    stop_reason: str | None = None


def rng_to_json(rng: random.Random) -> list[Any]:
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def rng_from_json(state: list[Any]) -> random.Random:
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng


def write_state(state: SearchState, path: Path) -> None:
    """Write to a temporary file beside ``path`` and rename it into place, so a crash while
    writing leaves the previous state intact instead of a truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(state.model_dump_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_state(path: Path) -> SearchState:
    try:
        text = path.read_text()
    except OSError as err:
        raise SearchStateError(f"cannot read search state {path}: {err}") from err
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise SearchStateError(f"search state {path} is not valid JSON: {err}") from err
    if raw.get("format_version") != FORMAT_VERSION:
        raise SearchStateError(
            f"search state {path} has format_version={raw.get('format_version')!r}; this elm-search reads {FORMAT_VERSION}"
        )
    try:
        return SearchState.model_validate(raw)
    except ValidationError as err:
        raise SearchStateError(f"search state {path} is malformed:\n{err}") from err
