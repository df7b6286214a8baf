"""What a search optimises: a named score of an architecture and the direction that is better.

The fitness is any callable on an :class:`~elm_space.Architecture`, so search never needs to
know whether the number came from a trained supernet, a proxy or a synthetic test function.
Cheap, exact objectives (parameters, FLOPs, predicted latency) are provided ready-made for the
multi-objective mode, where they form the second axis of the Pareto front.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from elm_search.latency import LatencyPredictor
from elm_space import Architecture, Head, count_flops, count_params


@dataclass(frozen=True)
class Objective:
    """A named fitness on architectures; ``maximize=False`` for costs such as latency."""

    name: str
    fn: Callable[[Architecture], float]
    maximize: bool = True

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise ValueError("Objective.name must be a non-empty string (it keys the saved values)")
        if not callable(self.fn):
            raise TypeError(f"Objective {self.name!r}: fn must be callable, got {type(self.fn).__name__}")

    def __call__(self, arch: Architecture) -> float:
        return float(self.fn(arch))

    def sign(self) -> float:
        """+1 when larger is better, -1 otherwise: ``sign * value`` is always 'larger is better'."""
        return 1.0 if self.maximize else -1.0

    def describe(self) -> dict[str, str | bool]:
        """What a saved state records, so a resume with a different objective is caught."""
        return {"name": self.name, "maximize": self.maximize}


def param_objective(head: Head = "none", num_labels: int = 2, name: str = "params") -> Objective:
    """Exact parameter count (elm-space arithmetic), to be minimised."""
    return Objective(
        name, lambda arch: float(count_params(arch, head=head, num_labels=num_labels)), maximize=False
    )


def flop_objective(seq_len: int, head: Head = "none", name: str = "flops") -> Objective:
    """Exact forward FLOPs of one ``seq_len``-token sequence, to be minimised."""
    if seq_len <= 0:
        raise ValueError(f"flop_objective: seq_len={seq_len} must be positive")
    return Objective(name, lambda arch: float(count_flops(arch, seq_len, head=head)), maximize=False)


def latency_objective(predictor: LatencyPredictor, name: str = "latency_ms") -> Objective:
    """Latency predicted from a measured per-block table, to be minimised."""
    return Objective(name, predictor.predict, maximize=False)
