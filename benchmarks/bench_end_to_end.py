"""End to end at equal parameters: the found model against a hand-designed one and random ones.

The pipeline's ``demo`` run trains the supernet, searches it and picks head counts by CKA (its
data, supernet, search and heads stages). Then, all under the found model's parameter count:
the found architecture; the hand-designed baseline (all BERT blocks of one width, the widest that
fits: the retrain stage's ``baseline_architecture``); and ``--randoms`` random architectures of the
space with between 90% and 100% of the found model's parameters. Each is extracted from the
supernet and retrained with the same loop, losses, data order and budget (the retrain stage's),
then measured by the same elm-eval code: task score after fine-tuning (tweet sentiment), masked-LM
loss on PTB's test documents, and CPU latency (batch 1, the run's latency length; the models are
timed in turns over several rounds). Random architectures are summarised by their median.

    python benchmarks/bench_end_to_end.py [--randoms 5 --seeds 42]
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import _common

import elm_eval
import elm_space
from elm_search import FeasibleSampler, GenomeCodec, ParamBudget
from elm_space import Architecture, SearchSpace
from elm_train import baseline_architecture, task_spec
from elm_train.pipeline import Run, stages

NAME = "end_to_end"
METRICS = ("params", "task_score", "lm_loss", "kd_loss", "latency_ms")


def random_architectures(
    space: SearchSpace, params: int, n: int, seed: int, share: float = 0.9
) -> list[Architecture]:
    """``n`` distinct random architectures with ``share * params`` to ``params`` parameters."""
    sampler = FeasibleSampler(GenomeCodec(space), [ParamBudget(max_params=params)], max_tries=50)
    rng, found = random.Random(f"end-to-end:{seed}"), {}
    for _ in range(100 * n):
        if len(found) == n:
            break
        arch = sampler.codec.decode(sampler.sample(rng))
        if elm_space.count_params(arch) >= share * params:
            found.setdefault(arch.stable_hash(), arch)
    if len(found) < n:
        raise RuntimeError(
            f"only {len(found)} random architectures within {share:.0%}-100% of {params} parameters"
        )
    return list(found.values())


def task_scores(run: Run, model_dir: str) -> dict[str, float]:
    """elm-eval's fine-tune-and-score for every task of the run, with the tasks stage's budget."""
    cfg, finetune = run.config.tasks, _common.finetune_settings(run)
    return {
        name: elm_eval.evaluate_task(model_dir, model_dir, task_spec(name, cfg), finetune).score
        for name in run.config.task_names
    }


def latencies(run: Run, model_dirs: dict[str, str], rounds: int = 3) -> dict[str, float]:
    """Median ms per forward of each model, timed in turns so that machine load hits all alike."""
    cfg = run.config.eval
    config = elm_eval.LatencyConfig(
        batch_sizes=[cfg.latency_batch_size],
        seq_lengths=[cfg.latency_seq_len],
        repeats=cfg.latency_repeats,
        measure_memory=False,
        progress=False,
    )
    times: dict[str, list[float]] = {name: [] for name in model_dirs}
    for _ in range(rounds):
        for name, path in model_dirs.items():
            times[name].append(elm_eval.measure_latency(path, config).entries[0].stats.median_ms)
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def end_to_end(smoke: bool, seed: int, randoms: int, dynamic: bool = True) -> dict[str, Any]:
    watch = _common.Stopwatch()
    run = _common.open_run(_common.run_config(smoke, dynamic=dynamic, seed=seed))
    _common.stages(run, "data", "supernet", "search", "heads")
    watch.lap("supernet, search, heads")
    space = stages.supernet.grown_space(run)
    found = stages.heads.final_architecture(run)
    params = elm_space.count_params(found)
    models = {"found": found, "baseline": baseline_architecture(space, params)}
    models.update({f"random{i}": a for i, a in enumerate(random_architectures(space, params, randoms, seed))})
    rows = []
    for name, arch in models.items():
        trained = _common.retrain(run, "bench", arch, run.config.retrain.init)
        scores = _common.cached(
            run.dir / "bench" / f"tasks-{arch.stable_hash()}.json",
            lambda t=trained: task_scores(run, t["model_dir"]),
        )
        rows.append(
            {
                "model": name,
                **trained,
                "tasks": scores,
                "task_score": statistics.fmean(scores.values()) if scores else None,
            }
        )
        print(
            f"{name}: {arch.to_string()} params {trained['params']} lm {trained['lm_loss']:.4f} tasks {scores}"
        )
    watch.lap("retrain and evaluate")
    latency = latencies(run, {r["model"]: r["model_dir"] for r in rows}, rounds=1 if smoke else 3)
    for row in rows:
        row["latency_ms"] = latency[row["model"]]
    watch.lap("latency")
    rand = [r for r in rows if r["model"].startswith("random")]
    median = {"model": f"median of {len(rand)} random", "architecture": "-"}
    for metric in METRICS:
        values = [r[metric] for r in rand if r[metric] is not None]
        median[metric] = statistics.median(values) if values else None
    found_params, baseline_params = rows[0]["params"], rows[1]["params"]
    return {
        "seed": seed,
        "dynamic": dynamic,
        "baseline_within_budget": baseline_params <= found_params,
        "run_dir": str(run.dir),
        "supernet_stage": run.done_info("supernet"),
        "search_stage": run.done_info("search"),
        "heads_stage": run.done_info("heads"),
        "retrain_steps": rows[0]["steps"],
        "models": rows,
        "random_median": median,
        "seconds": watch.seconds,
    }


COLUMNS = ["model", "architecture", "params", "task_score", "lm_loss", "kd_loss", "latency_ms"]


def table(result: dict[str, Any]) -> str:
    fixed = [r for r in result["models"] if not r["model"].startswith("random")]
    return _common.table([*fixed, result["random_median"]], COLUMNS)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME)
    p.set_defaults(seeds=[42])
    p.add_argument("--randoms", type=int, default=5, help="random architectures (their median is reported)")
    p.add_argument("--dynamic", choices=["on", "off"], default="on", help="the dynamic dimension")
    args = p.parse_args()
    if args.smoke:
        args.randoms = 1
    info = _common.machine(args.threads)
    results = [end_to_end(args.smoke, seed, args.randoms, args.dynamic == "on") for seed in args.seeds]
    result = {
        **_common.provenance(NAME, args, info),
        "seeds": args.seeds,
        "results": results,
    }
    text = "\n\n".join(
        f"Seed {r['seed']}, dynamic dimension {'on' if r['dynamic'] else 'off'}, {r['retrain_steps']} retraining "
        f"steps each. Task score: mean over the run's tasks (higher is better); losses lower is better.\n\n"
        + table(r)
        + (
            ""
            if r["baseline_within_budget"]
            else "\n\nThe baseline has MORE parameters than the found model."
        )
        for r in results
    )
    _common.write(_common.output_path(args, NAME), result, text)


if __name__ == "__main__":
    main()
