"""Random search, the baseline any search method has to beat.

It shares the loop, the constraints, the cache and the checkpoints of the evolutionary
search, so a comparison between the two differs only in how candidates are proposed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from elm_search.constraints import Constraint
from elm_search.objective import Objective
from elm_search.registry import register_searcher
from elm_search.searcher import Proposal, SearchConfig, Searcher, SearchView
from elm_space import SearchSpace


class RandomSearchConfig(SearchConfig):
    """Random search has no settings beyond the shared ones: ``population`` architectures per
    generation, a generation being the unit of checkpointing and progress."""


@register_searcher("random")
class RandomSearch(Searcher):
    Config = RandomSearchConfig
    config: RandomSearchConfig

    def __init__(
        self,
        space: SearchSpace,
        objectives: Objective | Sequence[Objective],
        config: RandomSearchConfig | None = None,
        constraints: Sequence[Constraint] | None = None,
    ) -> None:
        super().__init__(space, objectives, config or RandomSearchConfig(), constraints)

    def propose(self, view: SearchView, rng: random.Random) -> list[Proposal]:
        batch: list[Proposal] = []
        self.fill_random(rng, batch, set(view.evaluated), self.config.population)
        return batch
