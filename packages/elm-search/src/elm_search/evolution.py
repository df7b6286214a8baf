"""Evolutionary search as in METHOD.md section 4 (the SPOS evolution searcher).

Each generation: ``mutations`` children of random top-``parents`` records, each gene resampled
with probability ``mutation_prob``; ``crossovers`` children of two distinct top parents, each
gene from the second parent with probability ``crossover_prob``; random architectures fill the
rest of ``population``. Children that break a constraint or were already evaluated are
discarded and retried, so every generation spends its evaluations on new, feasible points.
The elite is the best ``parents`` of the previous elite and the new generation: by score with
one objective, by NSGA-II rank and crowding distance with several.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Self

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from elm_search.constraints import Constraint
from elm_search.objective import Objective
from elm_search.registry import register_searcher
from elm_search.result import EvaluatedArchitecture
from elm_search.searcher import Proposal, SearchConfig, Searcher, SearchView
from elm_space import SearchSpace


class EvolutionConfig(SearchConfig):
    """SPOS's defaults (population 50, top 10, 25 mutations, 25 crossovers, 20 generations);
    the reference ELM scripts used population 5 and top 1, which METHOD.md flags as unusual."""

    parents: PositiveInt = 10
    """How many of the best records breed (SPOS's ``select_num``)."""
    mutations: NonNegativeInt = 25
    crossovers: NonNegativeInt = 25
    mutation_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    """Per-layer probability that a mutation resamples the gene."""
    crossover_prob: float = Field(default=0.5, ge=0.0, le=1.0)
    """Per-layer probability that a crossover child takes the gene from the second parent."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.parents >= self.population:
            raise ValueError(
                f"population={self.population} must be larger than parents={self.parents} "
                "(the parents are the best of the evaluated population)"
            )
        if self.mutations + self.crossovers > self.population:
            raise ValueError(
                f"mutations + crossovers = {self.mutations + self.crossovers} exceeds population={self.population}"
            )
        if self.crossovers > 0 and self.parents < 2:
            raise ValueError(
                f"crossovers={self.crossovers} need at least 2 parents, got parents={self.parents}"
            )
        return self


@register_searcher("evolution")
class EvolutionarySearch(Searcher):
    Config = EvolutionConfig
    config: EvolutionConfig

    def __init__(
        self,
        space: SearchSpace,
        objectives: Objective | Sequence[Objective],
        config: EvolutionConfig | None = None,
        constraints: Sequence[Constraint] | None = None,
    ) -> None:
        super().__init__(space, objectives, config or EvolutionConfig(), constraints)

    def select_parents(self, view: SearchView, pool: list[EvaluatedArchitecture]) -> list[str]:
        return [pool[i].hash for i in self.rank(pool)[: self.config.parents]]

    def propose(self, view: SearchView, rng: random.Random) -> list[Proposal]:
        cfg = self.config
        parents = [r.genome for r in view.parents]
        batch: list[Proposal] = []
        taken = set(view.evaluated)
        if parents:
            attempts = cfg.mutations * cfg.max_tries
            wanted = len(batch) + cfg.mutations
            while len(batch) < wanted and attempts > 0:
                attempts -= 1
                parent = parents[rng.randrange(len(parents))]
                child = tuple(
                    self.codec.random_gene(i, rng) if rng.random() < cfg.mutation_prob else gene
                    for i, gene in enumerate(parent)
                )
                self.try_add(child, "mutation", batch, taken)
            if len(parents) >= 2:
                attempts = cfg.crossovers * cfg.max_tries
                wanted = len(batch) + cfg.crossovers
                while len(batch) < wanted and attempts > 0:
                    attempts -= 1
                    a, b = rng.sample(range(len(parents)), 2)
                    child = tuple(
                        gb if rng.random() < cfg.crossover_prob else ga
                        for ga, gb in zip(parents[a], parents[b], strict=True)
                    )
                    self.try_add(child, "crossover", batch, taken)
        self.fill_random(rng, batch, taken, cfg.population)
        return batch
