"""Stage 4: evolutionary search over the trained supernet's (grown) space.

Fitness is the distillation loss of a path on the held-out split (for the causal family it
includes the logits term), with the teacher's features computed once and reused for every
candidate (they do not depend on the student). The search
state is written after every generation, so a killed search resumes without re-evaluating.
"""

from __future__ import annotations

from typing import Any

import torch

import elm_search
from elm_search import EvolutionarySearch, EvolutionConfig, Objective, RandomSearch, RandomSearchConfig
from elm_space import Architecture, SearchSpace
from elm_train import batches
from elm_train.kd import TeacherFeatures, student_features
from elm_train.run import Run
from elm_train.stages import supernet as supernet_stage

STAGE = "search"


class SupernetFitness:
    """Mean distillation loss of a supernet path over fixed held-out batches (lower is better)."""

    def __init__(
        self, model: supernet_stage.SupernetKD, teacher: TeacherFeatures, val: list[dict[str, torch.Tensor]]
    ) -> None:
        self.model = model.eval()
        self.val = val
        self.teacher = [teacher(b["input_ids"], b["attention_mask"]) for b in val]

    @torch.no_grad()
    def __call__(self, arch: Architecture) -> float:
        total = 0.0
        for batch, feats in zip(self.val, self.teacher, strict=True):
            mask = batch["attention_mask"]
            out = self.model.student(batch["input_ids"], mask, arch)
            total += float(self.model.objective(student_features(out), feats, mask).total)
        return total / len(self.val)


def constraints(run: Run, space: SearchSpace) -> list[elm_search.Constraint]:
    cfg = run.config.search
    out: list[elm_search.Constraint] = []
    budget = cfg.param_budget or space.param_budget
    if budget:
        out.append(elm_search.ParamBudget(max_params=budget))
    if cfg.flops_budget:
        out.append(elm_search.FlopBudget(max_flops=cfg.flops_budget, seq_len=run.config.data.block_size))
    if cfg.latency_budget_ms:
        from elm_train.stages.latency_table import measure_table

        predictor = elm_search.LatencyPredictor(table=measure_table(run, space))
        out.append(elm_search.LatencyBudget(max_ms=cfg.latency_budget_ms, predictor=predictor))
    return out


def searcher(run: Run, space: SearchSpace, fitness: Objective) -> elm_search.Searcher:
    cfg = run.config.search
    found = constraints(run, space)
    if cfg.algorithm == "random":
        config = RandomSearchConfig(
            seed=run.config.seed, generations=cfg.generations, batch_size=cfg.population
        )
        return RandomSearch(space, fitness, config, constraints=found)
    config = EvolutionConfig(
        seed=run.config.seed,
        generations=cfg.generations,
        population=cfg.population,
        parents=cfg.parents,
        mutations=cfg.mutations,
        crossovers=cfg.crossovers,
        mutation_prob=cfg.mutation_prob,
    )
    return EvolutionarySearch(space, fitness, config, constraints=found)


def with_size_front(result: elm_search.SearchResult) -> elm_search.SearchResult:
    """The result with its Pareto front of loss against parameters, for the size plot (the
    search itself optimises the loss alone, under the budget)."""
    points = [[r.values["distill_loss"], float(r.params)] for r in result.records]
    front = [result.records[i] for i in elm_search.first_front(points)]
    return result.model_copy(update={"pareto_front": tuple(front)})


def run_stage(run: Run) -> dict[str, Any]:
    out = run.stage_dir(STAGE)
    model, space = supernet_stage.load_trained(run)
    val = batches.eval_batches(
        run.blocks["validation"], run.config.deepspeed.micro_batch_size, run.config.search.valid_batches
    )
    fitness = Objective("distill_loss", SupernetFitness(model, run.teacher_features, val), maximize=False)
    state = out / "state.json"
    result = searcher(run, space, fitness).run(state, resume=state.is_file())
    result.save(out / "result.json")
    elm_search.plot_progress(result, out / "progress.png")
    elm_search.plot_pareto(with_size_front(result), out / "pareto.png", x="params", y="distill_loss")
    assert result.best is not None
    best = result.best
    elm_search_info = {
        "architecture": best.architecture.to_string(),
        "hash": best.hash,
        "distill_loss": best.values["distill_loss"],
        "params": best.params,
        "evaluations": result.evaluations,
        "stop_reason": result.stop_reason,
    }
    (out / "architecture.json").write_text(best.architecture.model_dump_json(indent=2))
    run.mark_done(STAGE, elm_search_info)
    return elm_search_info


def best_architecture(run: Run) -> Architecture:
    run.done_info(STAGE)
    return Architecture.model_validate_json((run.dir / STAGE / "architecture.json").read_text())
