"""Search efficiency on the real supernet fitness: evolution against random search.

The pipeline's supernet stage trains the ``demo`` run's supernet (PTB, the pretrained MiniLM-L6
teacher, dynamic dimension on); the fitness is the search stage's own (SupernetFitness: the
path's held-out distillation loss, lower is better) under the space's parameter budget. For each
seed, evolution (the demo run's search settings) and random search get the same number of
distinct evaluations; we record the best fitness each reached, and its percentile among 1000
random architectures of the same budget (the share of them that are worse, ties counted half).

    python benchmarks/bench_search_efficiency.py [--seeds 0 1 2 3 4 5 6 7 8 9 --evaluations 128]

The demo space has only 4,096 architectures, so 128 evaluations already see 3% of it. ``--layers 8``
runs the same measurement on the demo space stacked to 8 layers (16.7 million architectures; same
per-layer choices, and the same parameter budget per layer), with its own supernet.
"""

from __future__ import annotations

import itertools
import random
import statistics

import _common
from scipy import stats

import elm_space
from elm_search import (
    EvolutionarySearch,
    EvolutionConfig,
    FeasibleSampler,
    GenomeCodec,
    Objective,
    ParamBudget,
    RandomSearch,
    RandomSearchConfig,
)
from elm_space import SearchSpace

NAME = "search_efficiency"


def percentile(reference: list[float], loss: float) -> float:
    """Share (in %) of the reference architectures with a higher loss, ties counted half."""
    return round(100.0 - stats.percentileofscore(reference, loss, kind="mean"), 2)


def deeper_demo(layers: int) -> SearchSpace:
    """The demo space with ``layers`` layers; its budget keeps the demo's parameters per layer
    (embedding excluded), so the budget cuts the same share of every layer's choices."""
    demo = elm_space.preset("demo")
    embedding = elm_space.embedding_params(demo.backbone)
    assert demo.param_budget is not None
    per_layer = (demo.param_budget - embedding) / len(demo.layers)
    return demo.model_copy(
        update={
            "name": f"demo-{layers}layers",
            "layers": demo.layers[:1] * layers,
            "param_budget": round(embedding + per_layer * layers),
        }
    )


def best_so_far(losses: list[float]) -> list[float]:
    return list(itertools.accumulate(losses, min))


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME, seeds=10)
    p.add_argument("--evaluations", type=int, default=128, help="distinct evaluations per search")
    p.add_argument("--reference", type=int, default=1000, help="random architectures to rank against")
    p.add_argument("--layers", type=int, default=4, help="layers of the demo space (4: the demo's own)")
    args = p.parse_args()
    if args.smoke:
        args.evaluations, args.reference, args.seeds = 12, 40, args.seeds[:2]
    info = _common.machine(args.threads)
    watch = _common.Stopwatch()
    overrides = {} if args.layers == 4 else {"space": deeper_demo(args.layers).model_dump(mode="json")}
    run = _common.open_run(_common.run_config(args.smoke, **overrides))
    _common.stages(run, "data", "supernet")
    watch.lap("supernet")
    fitness = _common.CachedFitness(run)
    space, cfg = fitness.space, run.config.search
    objective = Objective("distill_loss", fitness, maximize=False)
    budget = [ParamBudget(max_params=space.param_budget)] if space.param_budget else []
    generations = -(-args.evaluations // cfg.population)
    per_seed, curves = [], {"evolution": [], "random": []}
    for seed in args.seeds:
        evolution = EvolutionarySearch(
            space,
            objective,
            EvolutionConfig(
                **{
                    **cfg.searcher_settings(seed).model_dump(),
                    "generations": generations + 5,
                    "max_evaluations": args.evaluations,
                }
            ),
            constraints=budget,
        ).search(progress=False)
        rand = RandomSearch(
            space,
            objective,
            RandomSearchConfig(
                seed=seed,
                generations=generations + 5,
                max_evaluations=args.evaluations,
                population=cfg.population,
            ),
            constraints=budget,
        ).search(progress=False)
        row = {"seed": seed}
        for label, result in (("evolution", evolution), ("random", rand)):
            losses = [r.values["distill_loss"] for r in result.records]
            curves[label].append(best_so_far(losses))
            row[f"{label}_evaluations"] = len(losses)
            row[f"{label}_best"] = round(min(losses), 5)
            row[f"{label}_arch"] = result.best.architecture.to_string()
            row[f"{label}_params"] = result.best.params
        per_seed.append(row)
        print(f"seed {seed}: evolution {row['evolution_best']:.4f}  random {row['random_best']:.4f}")
    watch.lap("searches")

    codec = GenomeCodec(space)
    sampler = FeasibleSampler(codec, budget, max_tries=50)
    rng = random.Random(f"reference:{run.config.seed}")
    reference = [fitness(codec.decode(sampler.sample(rng))) for _ in range(args.reference)]
    watch.lap("reference")
    for row in per_seed:
        for label in ("evolution", "random"):
            row[f"{label}_percentile"] = percentile(reference, row[f"{label}_best"])

    evaluations = min(len(c) for c in curves["evolution"] + curves["random"])
    marks = sorted({max(1, evaluations * k // 8) for k in (1, 2, 4, 8)})
    mean_curve = {
        label: {n: round(statistics.fmean(c[n - 1] for c in curves[label]), 5) for n in marks}
        for label in curves
    }
    diffs = [r["evolution_best"] - r["random_best"] for r in per_seed]
    summary = {
        "evaluations": evaluations,
        "seeds": len(per_seed),
        "evolution_mean_best": round(statistics.fmean(r["evolution_best"] for r in per_seed), 5),
        "random_mean_best": round(statistics.fmean(r["random_best"] for r in per_seed), 5),
        "evolution_better": sum(d < 0 for d in diffs),
        "random_better": sum(d > 0 for d in diffs),
        "ties": sum(d == 0 for d in diffs),
        "wilcoxon_p": round(float(stats.wilcoxon(diffs).pvalue), 4)
        if any(diffs) and len(diffs) > 1
        else None,
        "evolution_median_percentile": statistics.median(r["evolution_percentile"] for r in per_seed),
        "random_median_percentile": statistics.median(r["random_percentile"] for r in per_seed),
        "mean_best_so_far": mean_curve,
        "reference": {
            "architectures": len(reference),
            "distinct": len(set(reference)),
            "min": round(min(reference), 5),
            "median": round(statistics.median(reference), 5),
            "max": round(max(reference), 5),
        },
        "distinct_architectures_evaluated": len(fitness.values),
    }
    result = {
        **_common.provenance(NAME, args, info),
        "seeds": args.seeds,
        "run_dir": str(run.dir),
        "supernet": run.done_info("supernet"),
        "space": space.name,
        "space_size": space.size(),
        "param_budget": space.param_budget,
        "search_settings": {"population": cfg.population, **cfg.options},
        "fitness": "SupernetFitness: held-out distillation loss of the path (lower is better)",
        "summary": summary,
        "per_seed": per_seed,
        "seconds": watch.seconds,
    }
    curve = "\n".join(f"| {n} | {mean_curve['evolution'][n]} | {mean_curve['random'][n]} |" for n in marks)
    text = (
        f"Supernet fitness (held-out distillation loss, lower is better) of the `{run.config.name}` run, "
        f"{evaluations} distinct evaluations per search, budget {space.param_budget} parameters.\n\n"
        f"Evolution better on {summary['evolution_better']} seeds, random on {summary['random_better']}, "
        f"ties {summary['ties']} (Wilcoxon p = {summary['wilcoxon_p']}). Median percentile among "
        f"{len(reference)} random architectures: evolution {summary['evolution_median_percentile']}, "
        f"random search {summary['random_median_percentile']}.\n\n"
        + _common.table(
            per_seed,
            [
                "seed",
                "evolution_best",
                "random_best",
                "evolution_percentile",
                "random_percentile",
                "evolution_arch",
            ],
        )
        + "\n\nMean best-so-far by evaluations:\n\n| evaluations | evolution | random |\n|---|---|---|\n"
        + curve
        + f"\n\nReference losses: {summary['reference']}. Seconds: {watch.seconds}.\n"
    )
    _common.write(_common.output_path(args, NAME), result, text)


if __name__ == "__main__":
    main()
