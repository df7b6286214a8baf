"""Evolutionary and random architecture search under parameter, FLOP and latency budgets.

Search sees only elm-space architectures and fitness callables; it never imports torch, so any
evaluator (a supernet, a proxy, a lookup table) can be plugged in.
"""

from elm_search.constraints import Constraint, ConstraintError, FlopBudget, LatencyBudget, ParamBudget
from elm_search.evolution import EvolutionarySearch, EvolutionConfig
from elm_search.genome import FeasibleSampler, Genome, GenomeCodec
from elm_search.latency import (
    BlockLatency,
    LatencyPredictor,
    LatencyTable,
    LatencyTableError,
    PredictorReport,
)
from elm_search.objective import Objective, flop_objective, latency_objective, param_objective
from elm_search.pareto import crowding_distance, dominates, first_front, non_dominated_sort, nsga_order
from elm_search.plots import plot_pareto, plot_progress
from elm_search.random_search import RandomSearch, RandomSearchConfig
from elm_search.ranking import kendall_tau, spearman, top_k_overlap
from elm_search.registry import (
    build_searcher,
    get_searcher,
    register_searcher,
    searcher_config,
    searcher_names,
)
from elm_search.result import EvaluatedArchitecture, GenerationSummary, ObjectiveSpec, Origin, SearchResult
from elm_search.searcher import Proposal, SearchConfig, Searcher, SearchView
from elm_search.state import SearchState, SearchStateError

__version__ = "0.1.0"

__all__ = [
    "BlockLatency",
    "Constraint",
    "ConstraintError",
    "EvaluatedArchitecture",
    "EvolutionConfig",
    "EvolutionarySearch",
    "FeasibleSampler",
    "FlopBudget",
    "GenerationSummary",
    "Genome",
    "GenomeCodec",
    "LatencyBudget",
    "LatencyPredictor",
    "LatencyTable",
    "LatencyTableError",
    "Objective",
    "ObjectiveSpec",
    "Origin",
    "ParamBudget",
    "PredictorReport",
    "Proposal",
    "RandomSearch",
    "RandomSearchConfig",
    "SearchConfig",
    "SearchResult",
    "SearchState",
    "SearchStateError",
    "SearchView",
    "Searcher",
    "build_searcher",
    "crowding_distance",
    "dominates",
    "first_front",
    "flop_objective",
    "get_searcher",
    "kendall_tau",
    "latency_objective",
    "non_dominated_sort",
    "nsga_order",
    "param_objective",
    "plot_pareto",
    "plot_progress",
    "register_searcher",
    "searcher_config",
    "searcher_names",
    "spearman",
    "top_k_overlap",
]
