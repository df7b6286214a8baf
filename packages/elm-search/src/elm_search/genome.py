"""Architectures as genomes, and sampling genomes that meet the constraints.

A genome is one index per layer into ``space.options(layer)``, the encoding of METHOD.md
section 4 (there one gene per layer picks one of the 12 candidate blocks). Mutation and
crossover work on genomes; everything that leaves this module is an Architecture again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from elm_search.constraints import Constraint, ConstraintError
from elm_space import Architecture, LayerChoice, SearchSpace, sample_choice

Genome = tuple[int, ...]


class GenomeCodec:
    """Translate between genomes and architectures of one space."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.options: list[list[LayerChoice]] = [space.options(i) for i in range(space.num_layers)]
        self._index: list[dict[LayerChoice, int]] = [
            {o: j for j, o in enumerate(opts)} for opts in self.options
        ]

    @property
    def num_layers(self) -> int:
        return len(self.options)

    def decode(self, genome: Sequence[int]) -> Architecture:
        return Architecture(
            backbone=self.space.backbone, layers=tuple(self.options[i][g] for i, g in enumerate(genome))
        )

    def encode(self, arch: Architecture) -> Genome:
        self.space.check(arch)
        return tuple(self._index[i][choice] for i, choice in enumerate(arch.layers))

    def random_gene(self, layer: int, rng: random.Random) -> int:
        """Candidate uniformly, then heads, exactly as elm-space samples (and the supernet trains)."""
        return self._index[layer][sample_choice(self.space, layer, rng)]


class FeasibleSampler:
    """Random genomes that satisfy every constraint, or a clear error after bounded effort.

    Plain rejection sampling is tried first because it is uniform over the feasible set. When a
    budget is so tight that it keeps failing, sampling switches to building the genome layer by
    layer in random order, allowing at each layer only options after which the cheapest
    completion still fits every budget. That is biased, but it finds feasible points where
    rejection would need millions of draws.
    """

    def __init__(self, codec: GenomeCodec, constraints: Sequence[Constraint], max_tries: int) -> None:
        self.codec = codec
        self.constraints = list(constraints)
        self.max_tries = max_tries
        h = codec.space.backbone.hidden_size
        self._fixed = [c.fixed_cost(codec.space) for c in self.constraints]
        self._limit = [c.limit for c in self.constraints]
        self._costs = [
            [[c.layer_cost(o, h) for o in opts] for opts in codec.options] for c in self.constraints
        ]
        self._min = [[min(layer) for layer in costs] for costs in self._costs]

    def feasible(self, genome: Sequence[int]) -> bool:
        """The exact check, on the architecture itself (the additive tables only guide sampling)."""
        if not self.constraints:
            return True
        arch = self.codec.decode(genome)
        return all(c.satisfied(arch) for c in self.constraints)

    def _uniform(self, rng: random.Random) -> Genome:
        return tuple(self.codec.random_gene(i, rng) for i in range(self.codec.num_layers))

    def _guided(self, rng: random.Random) -> Genome | None:
        n = self.codec.num_layers
        order = list(range(n))
        rng.shuffle(order)
        spent = list(self._fixed)
        rest = [sum(mins) for mins in self._min]  # cheapest completion of the unassigned layers
        genome = [0] * n
        for i in order:
            allowed = []
            for j in range(len(self.codec.options[i])):
                if all(
                    spent[c] + self._costs[c][i][j] + rest[c] - self._min[c][i] <= self._limit[c]
                    for c in range(len(self.constraints))
                ):
                    allowed.append(j)
            if not allowed:
                return None
            genome[i] = allowed[rng.randrange(len(allowed))]
            for c in range(len(self.constraints)):
                spent[c] += self._costs[c][i][genome[i]]
                rest[c] -= self._min[c][i]
        return tuple(genome)

    def sample(self, rng: random.Random) -> Genome:
        for _ in range(self.max_tries):
            genome = self._uniform(rng)
            if self.feasible(genome):
                return genome
        for _ in range(self.max_tries):
            guided = self._guided(rng)
            if guided is not None and self.feasible(guided):
                return guided
        labels = "; ".join(c.describe() for c in self.constraints)
        raise ConstraintError(
            f"no architecture of space {self.codec.space.name!r} meeting [{labels}] was found in "
            f"{2 * self.max_tries} tries; each constraint alone can be met, so together they are too tight "
            "(or raise max_tries)"
        )
