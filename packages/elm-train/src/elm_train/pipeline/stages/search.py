"""Search: the registered searcher over the trained supernet's grown space, each path scored by
the configured fitness (:mod:`elm_train.search.fitness`) under the budgets. The state is written
after every generation, so a killed search resumes without re-evaluating."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import datasets
import torch

from elm_eval import TaskSpec
from elm_space import Architecture
from elm_train.config import ConfigError
from elm_train.models import ElmSupernet
from elm_train.pipeline.sizing import PlanContext, StagePlan, capped_rows, si
from elm_train.pipeline.stage import Stage
from elm_train.pipeline.stages import multitask, supernet
from elm_train.runtime.monitor import search_events
from elm_train.search import latency_table, pareto
from elm_train.search.fitness import TaskFitness, build_fitness, finite_objective
from elm_train.search.searching import search_constraints, search_space
from elm_train.training import batches
from elm_train.training.kd import TeacherFeatures
from elm_train.training.multitask_training import heldout_count
from elm_train.training.supernet_training import SupernetKD

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def execute(run: Run) -> dict[str, Any]:
    cfg = run.config
    fitness = build_fitness(cfg.search, FitnessFromRun(run))
    objective = finite_objective(fitness, run.layout.supernet_final)
    space = supernet.grown_space(run)
    table = None
    if cfg.search.latency_budget_ms:
        layout = run.layout
        table = latency_table.load_or_measure(
            layout.latency_table, layout.latency_predictor, space, cfg.eval, cfg.seed
        )
    constraints = search_constraints(space, cfg.search, cfg.data.block_size, table)
    result = search_space(space, objective, cfg.search, cfg.seed, constraints, run.layout.search_state)
    result.save(run.layout.search_result)
    if run.metrics.monitor is not None:  # best and mean fitness per generation, for live monitoring
        run.metrics.monitor.write("search", search_events(result, fitness.name))
    pareto.save_plots(result, run.layout.search_plots, fitness.name)
    assert result.best is not None
    best = result.best
    run.layout.search_architecture.write_text(best.architecture.model_dump_json(indent=2))
    scored = (
        {"task_examples": {n: len(d) for n, (_, d) in fitness.heldout.items()}}
        if isinstance(fitness, TaskFitness)
        else {}
    )
    return {
        "architecture": best.architecture.to_string(),
        "hash": best.hash,
        "fitness": fitness.name,
        fitness.name: best.values[fitness.name],
        "params": best.params,
        "evaluations": result.evaluations,
        "stop_reason": result.stop_reason,
        **scored,
    }


class FitnessFromRun:
    """:class:`~elm_train.search.fitness.FitnessInputs` read from the run directory, each on first
    use: the supernet stage's model, the corpus's held-out blocks, the multitask stage's model
    and held-out rows."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.seed = run.config.seed
        self.dynamic = run.config.supernet.dynamic

    @property
    def pad_id(self) -> int:
        return self.run.tokenizer.pad_token_id or 0

    @cached_property
    def supernet(self) -> SupernetKD:
        return supernet.trained_supernet(self.run).model

    @property
    def teacher(self) -> TeacherFeatures:
        return self.run.teacher_features

    @cached_property
    def validation(self) -> list[dict[str, torch.Tensor]]:
        cfg = self.run.config
        return batches.eval_batches(
            self.run.blocks["validation"], cfg.deepspeed.micro_batch_size, cfg.search.valid_batches
        )

    @cached_property
    def multitask(self) -> ElmSupernet:
        return multitask.multitask_model(self.run).supernet

    @cached_property
    def heldout(self) -> dict[str, tuple[TaskSpec, datasets.Dataset]]:
        chosen = self.run.config.fitness_task_names  # search.fitness_tasks (the reference: MNLI alone)
        return {name: rows for name, rows in multitask.heldout(self.run).items() if name in chosen}


# --- what later stages load -------------------------------------------------------------------


def found_architecture(run: Run) -> Architecture:
    """The best path the search found."""
    if not run.layout.search_architecture.is_file():
        raise ConfigError(f"no search result in {run.dir} yet; run elm-train stage search")
    return Architecture.model_validate_json(run.layout.search_architecture.read_text())


def estimate(ctx: PlanContext, plan: StagePlan) -> None:
    cfg = ctx.config.search
    evaluations = cfg.generations * cfg.population
    held = cfg.valid_batches * ctx.config.deepspeed.micro_batch_size
    if ctx.valid_blocks is not None:
        held = min(held, ctx.valid_blocks)
    plan.steps = f"<= {evaluations:,} paths"
    if cfg.fitness == "task":
        task_estimate(ctx, plan, evaluations)
        return
    plan.tokens = evaluations * held * ctx.block
    plan.notes.append(f"each path scored on {held:,} held-out blocks")


def task_estimate(ctx: PlanContext, plan: StagePlan, evaluations: int) -> None:
    """The ``task`` fitness scores every path on the fitness tasks' held-out rows (the multitask
    stage's split, capped by ``search.task_examples``): those rows are the search's cost."""
    cfg, mt = ctx.config.search, ctx.config.multitask
    per_path, unknown, parts = 0, False, []
    for name in ctx.config.fitness_task_names:
        sizes = capped_rows(ctx, name, parts)
        if sizes is None:
            unknown = True
            continue
        train, _, how = sizes
        held = heldout_count(train, mt.heldout_fraction)
        scored = min(held, cfg.task_examples) if cfg.task_examples else held
        per_path += scored
        parts.append(f"{name}: {scored:,} held-out rows a path ({how})")
    more = " + unknown" if unknown else ""
    plan.tokens = None if unknown else evaluations * per_path * ctx.config.tasks.max_seq_length
    if unknown:
        plan.tokens_text = f">= {si(evaluations * per_path * ctx.config.tasks.max_seq_length)}"
    plan.notes += [
        f"each path scored on {per_path:,}{more} held-out rows of {', '.join(ctx.config.fitness_task_names)} "
        f"on the multitask supernet; <= {evaluations * per_path:,}{more} rows in all",
        *parts,
    ]


STAGE = Stage(
    "search",
    "search the grown space for the best path under the budgets",
    execute,
    reads=("data", "teacher", "supernet", "multitask"),
    writes=("search_state", "search_result", "search_architecture", "search_plots", "latency_table"),
    ranks="rank0",
    settings=("search",),
    estimate=estimate,
    loaders=(found_architecture,),
)
