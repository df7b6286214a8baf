"""A plugin as a user would write one: a loss, a searcher and a search fitness, registered on
import.

A run config lists it under ``plugins:`` and then names ``cosine`` as a hidden loss, ``greedy`` as
the search algorithm and ``fewest-layers`` as the fitness.
"""

from __future__ import annotations

import random

import torch
from pydantic import PositiveInt

import elm_distill
import elm_search
import elm_space
from elm_train.search.fitness import register_fitness


def cosine_hidden_loss(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - cosine similarity per token, averaged over real tokens."""
    per_token = 1 - torch.nn.functional.cosine_similarity(student, teacher, dim=-1)
    if mask is None:
        return per_token.mean()
    weights = mask.to(per_token.dtype)
    return (per_token * weights).sum() / weights.sum().clamp_min(1)


class GreedyConfig(elm_search.SearchConfig):
    neighbours: PositiveInt = 3
    """One-layer changes of the best architecture tried per generation."""


class GreedySearch(elm_search.Searcher):
    """Hill climbing: change one layer of the best architecture so far; random ones fill up."""

    Config = GreedyConfig
    config: GreedyConfig

    def propose(self, view: elm_search.SearchView, rng: random.Random) -> list[elm_search.Proposal]:
        batch: list[elm_search.Proposal] = []
        taken = set(view.evaluated)
        if view.records:
            best = view.records[self.rank(view.records)[0]].genome
            for _ in range(self.config.neighbours * self.config.max_tries):
                if len(batch) >= self.config.neighbours:
                    break
                layer = rng.randrange(len(best))
                child = (*best[:layer], self.codec.random_gene(layer, rng), *best[layer + 1 :])
                self.try_add(child, "greedy", batch, taken)
        self.fill_random(rng, batch, taken, self.config.population)
        return batch


elm_distill.register_loss("cosine", cosine_hidden_loss)
elm_search.register_searcher("greedy")(GreedySearch)


class FewestLayers:
    """The path's depth, then its size: the shallowest, smallest path within the budgets wins."""

    name = "depth"
    maximize = False

    def __call__(self, arch: elm_space.Architecture) -> float:
        return len(arch.layers) + elm_space.count_params(arch) / 1e12


@register_fitness("fewest-layers")
def fewest_layers(settings: object, inputs: object) -> FewestLayers:
    return FewestLayers()  # loads nothing from the run: no input is asked for
