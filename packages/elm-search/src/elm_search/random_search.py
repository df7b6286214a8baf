"""Random search, the baseline any search method has to beat.

It shares the loop, the constraints, the cache and the checkpoints of the evolutionary
search, so a comparison between the two differs only in how candidates are proposed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pydantic import PositiveInt

from elm_search.constraints import Constraint
from elm_search.objective import Objective
from elm_search.searcher import Proposal, SearchConfig, Searcher, _Run
from elm_space import SearchSpace


class RandomSearchConfig(SearchConfig):
    batch_size: PositiveInt = 50
    """Architectures per generation; a generation is the unit of checkpointing and progress."""


class RandomSearch(Searcher):
    algorithm = "random"
    config: RandomSearchConfig

    def __init__(
        self,
        space: SearchSpace,
        objectives: Objective | Sequence[Objective],
        config: RandomSearchConfig | None = None,
        constraints: Sequence[Constraint] | None = None,
    ) -> None:
        super().__init__(space, objectives, config or RandomSearchConfig(), constraints)

    def _propose(self, run: _Run, rng: random.Random) -> list[Proposal]:
        batch: list[Proposal] = []
        self._fill_random(rng, batch, set(run.genomes), self.config.batch_size)
        return batch
