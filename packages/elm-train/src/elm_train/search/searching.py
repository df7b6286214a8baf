"""The search over a trained supernet's space: constraints from the settings, the registered
searcher, and the result with its size front.

The algorithm is looked up by name in elm-search's registry, so a searcher a plugin registered
runs here exactly like the built-in ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import elm_search
import elm_space
from elm_search import Objective
from elm_space import Architecture, SearchSpace
from elm_train.config import ConfigError, SearchStageConfig


def cheapest(space: SearchSpace, cost: Callable[[elm_space.LayerChoice], int]) -> Architecture:
    """The architecture of least total cost: parameters and FLOPs add up over layers, so it takes
    the cheapest option of each layer."""
    layers = tuple(min(space.options(i), key=cost) for i in range(space.num_layers))
    return Architecture(backbone=space.backbone, layers=layers)


def check_budgets(space: SearchSpace, settings: SearchStageConfig, seq_len: int) -> None:
    """A budget that no architecture of ``space`` meets is refused before anything trains."""
    hidden = space.backbone.hidden_size
    budget = settings.param_budget or space.param_budget
    if budget:
        least = elm_space.count_params(cheapest(space, lambda c: elm_space.layer_params(c, hidden)))
        if least > budget:
            raise ConfigError(
                f"search.param_budget={budget:,} is below the smallest architecture of space "
                f"{space.name!r} ({least:,} parameters): no architecture can meet it"
            )
    if settings.flops_budget:
        arch = cheapest(space, lambda c: elm_space.layer_flops(c, hidden, seq_len))
        least = elm_space.count_flops(arch, seq_len)
        if least > settings.flops_budget:
            raise ConfigError(
                f"search.flops_budget={settings.flops_budget:,} is below the cheapest architecture of "
                f"space {space.name!r} ({least:,} FLOPs at {seq_len} tokens): no architecture can meet it"
            )


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
            raise ConfigError("search.latency_budget_ms needs a measured latency table (latency_table=)")
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
