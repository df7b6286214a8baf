"""Hard limits on a candidate: parameters, FLOPs and predicted latency.

All three costs add up layer by layer (a fixed part plus one term per layer), and search
relies on that twice: the smallest cost any architecture of a space can have is the fixed part
plus each layer's cheapest option, so an impossible budget is rejected before anything is
evaluated; and a sampler can keep a partial architecture feasible layer by layer when plain
rejection sampling keeps failing under a tight budget.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt

from elm_search.latency import LatencyPredictor
from elm_space import (
    Architecture,
    Head,
    LayerChoice,
    SearchSpace,
    count_flops,
    count_params,
    embedding_params,
    head_params,
    layer_flops,
    layer_params,
)
from elm_space.counting import flop_breakdown


class ConstraintError(ValueError):
    """A constraint no architecture of the space can meet, or one search could not satisfy."""


class Constraint(BaseModel, ABC):
    """An additive cost with an upper limit: ``fixed_cost + sum(layer_cost) <= limit``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @property
    @abstractmethod
    def limit(self) -> float: ...

    @abstractmethod
    def value(self, arch: Architecture) -> float:
        """The exact cost of a whole architecture."""

    @abstractmethod
    def fixed_cost(self, space: SearchSpace) -> float:
        """The part every architecture of the space pays (embedding, head)."""

    @abstractmethod
    def layer_cost(self, choice: LayerChoice, hidden_size: int) -> float: ...

    @abstractmethod
    def describe(self) -> str:
        """A short human label for error messages, e.g. ``params <= 5,000,000``."""

    def satisfied(self, arch: Architecture) -> bool:
        return self.value(arch) <= self.limit

    def minimum(self, space: SearchSpace) -> float:
        """The smallest cost of any architecture of the space, exactly."""
        h = space.backbone.hidden_size
        return self.fixed_cost(space) + sum(
            min(self.layer_cost(o, h) for o in space.options(i)) for i in range(space.num_layers)
        )

    def check_space(self, space: SearchSpace) -> None:
        """Raise ConstraintError if no architecture of ``space`` can meet this constraint."""
        smallest = self.minimum(space)
        if smallest > self.limit:
            raise ConstraintError(
                f"constraint {self.describe()} cannot be met in space {space.name!r}: "
                f"its smallest architecture already has {smallest:,.6g}"
            )


class ParamBudget(Constraint):
    """At most ``max_params`` parameters (elm-space's exact count, with the given head)."""

    kind: Literal["params"] = "params"
    max_params: PositiveInt
    head: Head = "none"
    num_labels: PositiveInt = 2

    @property
    def limit(self) -> float:
        return float(self.max_params)

    def value(self, arch: Architecture) -> float:
        return float(count_params(arch, head=self.head, num_labels=self.num_labels))

    def fixed_cost(self, space: SearchSpace) -> float:
        return float(
            embedding_params(space.backbone) + head_params(space.backbone, self.head, self.num_labels)
        )

    def layer_cost(self, choice: LayerChoice, hidden_size: int) -> float:
        return float(layer_params(choice, hidden_size))

    def describe(self) -> str:
        return f"params <= {self.max_params:,} (head={self.head})"


class FlopBudget(Constraint):
    """At most ``max_flops`` forward FLOPs on one sequence of ``seq_len`` tokens."""

    kind: Literal["flops"] = "flops"
    max_flops: PositiveInt
    seq_len: PositiveInt
    head: Head = "none"

    @property
    def limit(self) -> float:
        return float(self.max_flops)

    def value(self, arch: Architecture) -> float:
        return float(count_flops(arch, self.seq_len, head=self.head))

    def fixed_cost(self, space: SearchSpace) -> float:
        # the fixed part does not depend on the layers, so any architecture of the space gives it
        probe = Architecture(backbone=space.backbone, layers=(space.options(0)[0],))
        parts = flop_breakdown(probe, self.seq_len, head=self.head)
        return float(parts.embedding + parts.head)

    def layer_cost(self, choice: LayerChoice, hidden_size: int) -> float:
        return float(layer_flops(choice, hidden_size, self.seq_len))

    def describe(self) -> str:
        return f"FLOPs <= {self.max_flops:,} at seq_len={self.seq_len} (head={self.head})"


class LatencyBudget(Constraint):
    """At most ``max_ms`` milliseconds, as predicted from a measured per-block table."""

    kind: Literal["latency"] = "latency"
    max_ms: PositiveFloat
    predictor: LatencyPredictor

    @property
    def limit(self) -> float:
        return float(self.max_ms)

    def value(self, arch: Architecture) -> float:
        return self.predictor.predict(arch)

    def fixed_cost(self, space: SearchSpace) -> float:
        return self.predictor.fixed_ms()

    def layer_cost(self, choice: LayerChoice, hidden_size: int) -> float:
        return self.predictor.layer_ms(choice, hidden_size)

    def describe(self) -> str:
        t = self.predictor.table
        return f"latency <= {self.max_ms:g} ms ({t.device}, batch {t.batch_size}, seq_len {t.seq_len})"

    def check_space(self, space: SearchSpace) -> None:
        self.predictor.check_covers(space)
        super().check_space(space)
