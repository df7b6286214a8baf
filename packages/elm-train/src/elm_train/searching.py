"""The search over a trained supernet's space: constraints from the settings, the registered
searcher, and the result with its size front.

The algorithm is looked up by name in elm-search's registry, so a searcher a plugin registered
runs here exactly like the built-in ones.
"""

from __future__ import annotations

from pathlib import Path

import elm_search
from elm_search import Objective
from elm_space import SearchSpace
from elm_train.config import SearchStageConfig


def search_constraints(
    space: SearchSpace,
    settings: SearchStageConfig,
    seq_len: int,
    latency_table: elm_search.LatencyTable | None = None,
) -> list[elm_search.Constraint]:
    """The budgets ``settings`` names (the space's own parameter budget by default); a latency
    budget needs the measured ``latency_table``."""
    out: list[elm_search.Constraint] = []
    budget = settings.param_budget or space.param_budget
    if budget:
        out.append(elm_search.ParamBudget(max_params=budget))
    if settings.flops_budget:
        out.append(elm_search.FlopBudget(max_flops=settings.flops_budget, seq_len=seq_len))
    if settings.latency_budget_ms:
        if latency_table is None:
            raise ValueError("search.latency_budget_ms needs a measured latency table")
        predictor = elm_search.LatencyPredictor(table=latency_table)
        out.append(elm_search.LatencyBudget(max_ms=settings.latency_budget_ms, predictor=predictor))
    return out


def search_space(
    space: SearchSpace,
    fitness: Objective,
    settings: SearchStageConfig,
    seed: int,
    constraints: list[elm_search.Constraint],
    state_path: Path | None = None,
    progress: bool = True,
) -> elm_search.SearchResult:
    """Run the configured searcher to the end, resuming from ``state_path`` when it exists."""
    searcher = elm_search.build_searcher(
        settings.algorithm, space, fitness, settings.searcher_settings(seed), constraints
    )
    resume = state_path is not None and state_path.is_file()
    return searcher.search(state_path, resume=resume, progress=progress)


def with_size_front(result: elm_search.SearchResult) -> elm_search.SearchResult:
    """The result with its Pareto front of the fitness against parameters, for the size plot
    (the search itself optimises the fitness alone, under the budget)."""
    name = result.objectives[0].name
    sign = 1.0 if not result.objectives[0].maximize else -1.0
    points = [[sign * r.values[name], float(r.params)] for r in result.records]
    front = [result.records[i] for i in elm_search.first_front(points)]
    return result.model_copy(update={"pareto_front": tuple(front)})
