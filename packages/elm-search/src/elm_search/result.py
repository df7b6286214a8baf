"""What a search returns and saves: every evaluated architecture, per-generation progress, the
best architecture and the Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from elm_space import Architecture

Origin = str
"""How a candidate was proposed: "random", "mutation", "crossover", or a label a plugged-in
searcher chooses."""
StopReason = Literal["generations", "max_evaluations", "exhausted", "stop_after"]


class ObjectiveSpec(BaseModel):
    """An objective as data: its callable is not saved, its name and direction are."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    maximize: bool


class EvaluatedArchitecture(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    hash: str
    """``Architecture.stable_hash()``, the cache key."""
    architecture: Architecture
    genome: tuple[int, ...]
    """Index per layer into ``space.options(layer)``."""
    values: dict[str, float]
    """Objective name -> value."""
    params: int
    """Exact parameter count without a head, kept for every record so any run can be plotted
    against model size."""
    generation: int
    origin: Origin


class GenerationSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: int
    new_evaluations: int
    evaluations: int
    """Cumulative unique evaluations after this generation."""
    best: float
    """Best value of the first objective so far."""
    best_hash: str


class SearchResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: str
    space_name: str
    objectives: tuple[ObjectiveSpec, ...]
    records: tuple[EvaluatedArchitecture, ...]
    """Every evaluated architecture, in evaluation order."""
    generations: tuple[GenerationSummary, ...]
    best: EvaluatedArchitecture | None
    """Best by the first objective (earliest evaluated among ties); None before any evaluation."""
    pareto_front: tuple[EvaluatedArchitecture, ...]
    """Non-dominated records over all objectives, ordered by the last objective; with one
    objective, the records sharing the best value."""
    finished: bool
    stop_reason: StopReason

    @property
    def evaluations(self) -> int:
        return len(self.records)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> SearchResult:
        return cls.model_validate_json(Path(path).read_text())
