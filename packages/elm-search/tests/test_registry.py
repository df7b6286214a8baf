"""The public extension point: a searcher written outside the package, registered by name."""

from __future__ import annotations

import random

import pytest
from pydantic import PositiveInt, ValidationError

from elm_search import (
    EvolutionarySearch,
    Objective,
    Proposal,
    RandomSearch,
    SearchConfig,
    Searcher,
    SearchView,
    build_searcher,
    get_searcher,
    register_searcher,
    searcher_config,
    searcher_names,
)


class CoordinateConfig(SearchConfig):
    sweeps_per_generation: PositiveInt = 1


class CoordinateSearch(Searcher):
    """Greedy coordinate ascent: change one gene of the best record at a time."""

    Config = CoordinateConfig
    config: CoordinateConfig

    def propose(self, view: SearchView, rng: random.Random) -> list[Proposal]:
        batch: list[Proposal] = []
        taken = set(view.evaluated)
        if view.records:
            best = max(view.records, key=lambda r: r.values["score"]).genome
            for layer in range(len(best)):
                for gene in range(len(self.codec.options[layer])):
                    child = (*best[:layer], gene, *best[layer + 1 :])
                    self.try_add(child, "coordinate", batch, taken)
        self.fill_random(rng, batch, taken, self.config.population)
        return batch[: self.config.population]


@pytest.fixture()
def coordinate():
    register_searcher("coordinate-test")(CoordinateSearch)
    yield CoordinateSearch
    from elm_search import registry

    registry._SEARCHERS.pop("coordinate-test")


def test_builtins_are_registered():
    assert {"evolution", "random"} <= set(searcher_names())
    assert get_searcher("evolution") is EvolutionarySearch and EvolutionarySearch.algorithm == "evolution"
    assert get_searcher("random") is RandomSearch


def test_a_registered_searcher_runs_with_its_own_labels(coordinate, space3, make_problem):
    problem = make_problem(space3, 0)
    search = build_searcher(
        "coordinate-test", space3, Objective("score", problem), {"generations": 4, "population": 6}
    )
    result = search.search(progress=False)
    assert result.algorithm == "coordinate-test"
    origins = {r.origin for r in result.records}
    assert origins == {"random", "coordinate"}
    # greedy: the best never gets worse, and every record was evaluated once
    bests = [g.best for g in result.generations]
    assert bests == sorted(bests)
    assert len(problem.calls) == len(set(problem.calls)) == result.evaluations


def test_settings_are_validated_by_the_searchers_config(coordinate):
    with pytest.raises(ValidationError, match="sweeps_per_generation"):
        searcher_config("coordinate-test", {"sweeps_per_generation": 0})
    with pytest.raises(ValidationError, match="parents"):
        searcher_config("evolution", {"population": 4, "parents": 8})
    assert searcher_config("random", {"population": 3}).population == 3


def test_names_are_checked():
    with pytest.raises(KeyError, match="no searcher named 'nope'; registered: .*evolution"):
        get_searcher("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_searcher("evolution")(RandomSearch)
    with pytest.raises(TypeError, match="Searcher subclass"):
        register_searcher("not-a-searcher")(int)  # type: ignore[arg-type]
