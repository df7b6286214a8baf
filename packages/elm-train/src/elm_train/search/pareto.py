"""What a finished search shows: the Pareto front of its fitness against parameters, and the two
plots (progress per generation, the front) the report shows."""

from __future__ import annotations

from pathlib import Path

import elm_search


def with_size_front(result: elm_search.SearchResult) -> elm_search.SearchResult:
    """The result with its Pareto front of the fitness against parameters, for the size plot
    (the search itself optimises the fitness alone, under the budget)."""
    name = result.objectives[0].name
    sign = 1.0 if not result.objectives[0].maximize else -1.0
    points = [[sign * r.values[name], float(r.params)] for r in result.records]
    front = [result.records[i] for i in elm_search.first_front(points)]
    return type(result).model_validate(
        {**result.model_dump(), "pareto_front": [r.model_dump() for r in front]}
    )


def save_plots(result: elm_search.SearchResult, paths: dict[str, Path], fitness: str) -> None:
    """``paths["progress"]``: best and mean fitness per generation; ``paths["pareto"]``: every
    evaluated path, fitness against parameters, with the front."""
    elm_search.plot_progress(result, paths["progress"])
    elm_search.plot_pareto(with_size_front(result), paths["pareto"], x="params", y=fitness)
