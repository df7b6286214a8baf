"""The search stage's section: the registered searcher, its settings, budgets and fitness."""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, PositiveInt, ValidationError, model_validator

import elm_search
from elm_train.config.base import Section


class SearchStageConfig(Section):
    algorithm: str = "evolution"
    """A searcher of elm-search's registry: ``evolution``, ``random``, or one a plugin registered."""
    generations: PositiveInt = 10
    population: PositiveInt = 16
    options: dict[str, Any] = {"parents": 4, "mutations": 6, "crossovers": 6, "mutation_prob": 0.25}  # noqa: RUF012
    """The algorithm's own settings (evolution: parents, mutations, crossovers, mutation_prob,
    crossover_prob), validated by the searcher's settings class."""
    param_budget: PositiveInt | None = None
    """Defaults to the space's ``param_budget``."""
    flops_budget: PositiveInt | None = None
    latency_budget_ms: float | None = Field(default=None, gt=0)
    """Predicted CPU latency per batch from a measured per-block table."""
    valid_batches: PositiveInt = 4
    fitness: str = "kd"
    """How a path is scored: ``kd``, its held-out distillation loss on the trained supernet;
    ``task``, its mean score over the multitask stage's tasks on their held-out examples (each task
    with its own metric; needs ``multitask.enabled``);
    ``wpca``, the training-free W-PCA proxy (layer-mean PCA count of FFN pre-activations times
    parameters, on ``wpca_batches`` held-out batches); ``params``, its parameter count; or a name a
``plugins:`` module registered (:func:`elm_train.search.fitness.register_fitness`), checked before
any stage runs."""
    wpca_batches: PositiveInt = 3
    """Held-out batches the W-PCA proxy reads (the reference used 3)."""
    fitness_tasks: list[str] | None = None
    """The tasks whose held-out scores the ``task`` fitness averages (each must be a multitask
    task); ``None``: all of them. The reference searches on MNLI alone (its
    ``validate2(is_search=True)``): the small tasks' held-out sets (249 to 855 rows on GLUE) are
    the noisiest part of a mean. Read only when ``fitness`` is ``task``."""
    task_examples: PositiveInt | None = None
    """Held-out examples per task that the ``task`` fitness scores (a seeded sample of the multitask
    stage's held-out rows); ``None``: all of them, as the reference does. On GLUE 10% of MNLI's
    training set alone is 39k examples for every path evaluated."""

    @model_validator(mode="after")
    def _searcher_accepts(self) -> Self:
        try:
            self.searcher_settings(seed=0)
        except KeyError as err:
            raise ValueError(f"search.algorithm: {err.args[0]}") from None
        except ValidationError as err:
            problems = "; ".join(
                f"search.options.{'.'.join(str(x) for x in e['loc']) or '(all)'}: {e['msg']}"
                for e in err.errors()
            )
            raise ValueError(problems) from None
        return self

    def searcher_settings(self, seed: int) -> elm_search.SearchConfig:
        """The registered searcher's own settings object, validated."""
        return elm_search.searcher_config(
            self.algorithm,
            {"seed": seed, "generations": self.generations, "population": self.population, **self.options},
        )
