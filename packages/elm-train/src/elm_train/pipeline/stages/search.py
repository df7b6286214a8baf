"""Search: the registered searcher over the trained supernet's grown space, scored by
the configured fitness (:mod:`elm_train.fitness`). The state is written after every generation, so a
killed search resumes without re-evaluating."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import elm_search
from elm_search import LatencyTable, Objective
from elm_space import Architecture, SearchSpace
from elm_train import batches, faults, fsio
from elm_train.errors import ElmTrainError
from elm_train.fitness import Fitness, build_fitness
from elm_train.latency_table import measure_table
from elm_train.monitor import search_events
from elm_train.multitask_training import TaskFitness, sample_heldout
from elm_train.searching import search_constraints, search_space, with_size_front

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def _latency_table(run: Run, space: SearchSpace) -> LatencyTable:
    """The measured per-block table, cached in the run directory; its predictor's error beside it."""
    if run.layout.latency_table.is_file():
        return LatencyTable.load(run.layout.latency_table)
    cfg = run.config.eval
    table, report = measure_table(
        space, cfg.latency_batch_size, cfg.latency_seq_len, cfg.latency_repeats, run.config.seed
    )
    # the table is the cache: written last and atomically, so a killed run never finds a torn one
    fsio.write_text_atomic(run.layout.latency_predictor, json.dumps(report.model_dump(), indent=2))
    fsio.write_text_atomic(run.layout.latency_table, table.model_dump_json(indent=2) + "\n")
    return table


def execute(run: Run) -> dict[str, Any]:
    cfg = run.config
    run.stage_dir("search")
    trained = run.trained_supernet()
    space = trained.space
    val = batches.eval_batches(
        run.blocks["validation"], cfg.deepspeed.micro_batch_size, cfg.search.valid_batches
    )
    fitness: Fitness
    if cfg.search.fitness == "task":  # the multitask supernet on the held-out training rows
        pad = run.tokenizer.pad_token_id or 0
        heldout = {
            name: (spec, sample_heldout(data, cfg.search.task_examples, cfg.seed, name))
            for name, (spec, data) in run.multitask_heldout().items()
            if name in cfg.fitness_task_names  # search.fitness_tasks (the reference: MNLI alone)
        }
        fitness = TaskFitness(run.multitask_model().supernet, heldout, pad)
    else:
        fitness = build_fitness(cfg.search, trained.model, run.teacher_features, val, cfg.supernet.dynamic)

    def evaluate(arch: Architecture) -> float:
        value = fitness(arch)
        if not math.isfinite(value):  # a user error (the run diverged), not a bug of the searcher
            raise ElmTrainError(
                f"search: the held-out {fitness.name} of path {arch.to_string()} on the trained supernet "
                f"({run.layout.supernet_final}) is {value}, which the search cannot rank: the supernet's "
                "outputs overflow or the distillation loss is not finite on the held-out data. Start a new "
                "run with a lower supernet learning rate or gradient clipping (deepspeed.gradient_clipping)"
            )
        faults.maybe_crash("search-eval")  # test-only fault injection (elm_train.faults)
        return value

    objective = Objective(fitness.name, evaluate, maximize=fitness.maximize)
    table = _latency_table(run, space) if cfg.search.latency_budget_ms else None
    found = search_constraints(space, cfg.search, cfg.data.block_size, table)
    result = search_space(space, objective, cfg.search, cfg.seed, found, run.layout.search_state)
    result.save(run.layout.search_result)
    if run.metrics.monitor is not None:  # best and mean fitness per generation, for live monitoring
        run.metrics.monitor.write("search", search_events(result, fitness.name))
    plots = run.layout.search_plots
    elm_search.plot_progress(result, plots["progress"])
    elm_search.plot_pareto(with_size_front(result), plots["pareto"], x="params", y=fitness.name)
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
