"""Ranking fidelity: does the supernet order architectures as training them alone does?

The core claim of the relational KD losses is that they keep the candidate blocks distinct, so
that a path's score in the supernet predicts how good the architecture is on its own. For each
hidden loss (Pearson, the relational one, and plain MSE) the pipeline trains one supernet of the
``demo`` run with that loss; then ``--architectures`` random architectures of its space (the same
choice indices for both losses, at each supernet's grown widths) are each trained alone from scratch, with the retrain stage's loop and the
same KD terms, for a short fixed budget (``--steps``). Scores: the supernet fitness (held-out
distillation loss of the path) against the stand-alone model's held-out distillation loss and its
masked-LM loss (elm-eval, PTB test). Reported: Kendall tau and Spearman per seed and loss, and as
a yardstick the tau of the parameter count alone.

    python benchmarks/bench_ranking_fidelity.py [--losses pearson mse --architectures 12 --steps 100]
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import _common

import elm_space
from elm_search import kendall_tau, spearman
from elm_space import Architecture, SearchSpace

NAME = "ranking_fidelity"


def architectures(space: SearchSpace, n: int, seed: int) -> list[Architecture]:
    """``n`` distinct uniformly sampled architectures. Every loss gets the same draws (choice
    indices); a candidate's current width is its own supernet's, so it differs where growth did."""
    rng, found = random.Random(f"ranking:{seed}"), {}
    while len(found) < n:
        arch = elm_space.sample(space, rng)
        found.setdefault(arch.stable_hash(), arch)
    return list(found.values())


def correlations(rows: list[dict[str, Any]], proxy: str) -> dict[str, float]:
    """Rank agreement of ``proxy`` with each stand-alone score (all losses: lower is better)."""
    x = [r[proxy] for r in rows]
    out = {}
    for truth in ("alone_kd_loss", "alone_lm_loss"):
        y = [r[truth] for r in rows]
        out[f"tau_{truth}"] = round(kendall_tau(x, y), 4)
        out[f"spearman_{truth}"] = round(spearman(x, y), 4)
    return out


def fidelity(smoke: bool, seed: int, loss: str, n: int, steps: int, dynamic: bool = True) -> dict[str, Any]:
    """Train the supernet (``loss``), score ``n`` architectures in it and alone, correlate."""
    watch = _common.Stopwatch()
    run = _common.open_run(_common.run_config(smoke, hidden_loss=loss, dynamic=dynamic, seed=seed))
    _common.stages(run, "data", "supernet")
    watch.lap("supernet")
    fitness = _common.CachedFitness(run)
    short = _common.with_retrain_steps(run, steps)
    rows = []
    for arch in architectures(fitness.space, n, seed):
        alone = _common.retrain(short, "standalone", arch, init="scratch")
        rows.append(
            {
                "architecture": arch.to_string(),
                "params": elm_space.count_params(arch),
                "supernet_kd_loss": round(fitness(arch), 5),
                "alone_kd_loss": round(alone["kd_loss"], 5),
                "alone_lm_loss": round(alone["lm_loss"], 5),
                "alone_train_seconds": alone["train_seconds"],
            }
        )
        print(f"{loss} seed {seed} {rows[-1]}")
    watch.lap("standalone")
    params_rows = [{**r, "minus_params": -r["params"]} for r in rows]  # bigger is expected better
    return {
        "seed": seed,
        "hidden_loss": loss,
        "dynamic": dynamic,
        "run_dir": str(run.dir),
        "supernet_stage": run.done_info("supernet"),
        "standalone_steps": steps,
        "supernet": correlations(rows, "supernet_kd_loss"),
        "params_only": correlations(params_rows, "minus_params"),
        "architectures": rows,
        "seconds": watch.seconds,
    }


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "seed": r["seed"],
            "hidden_loss": r["hidden_loss"],
            "dynamic": r["dynamic"],
            "tau_kd": r["supernet"]["tau_alone_kd_loss"],
            "tau_lm": r["supernet"]["tau_alone_lm_loss"],
            "spearman_kd": r["supernet"]["spearman_alone_kd_loss"],
            "params_tau_kd": r["params_only"]["tau_alone_kd_loss"],
            "params_tau_lm": r["params_only"]["tau_alone_lm_loss"],
        }
        for r in results
    ]


COLUMNS = [
    "seed",
    "hidden_loss",
    "dynamic",
    "tau_kd",
    "tau_lm",
    "spearman_kd",
    "params_tau_kd",
    "params_tau_lm",
]


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME)
    p.set_defaults(seeds=[42])
    p.add_argument("--losses", nargs="+", default=["pearson", "mse"], choices=["pearson", "mse"])
    p.add_argument("--architectures", type=int, default=12)
    p.add_argument("--steps", type=int, default=100, help="training steps of each stand-alone model")
    p.add_argument("--dynamic", choices=["on", "off"], default="on", help="the dynamic dimension")
    args = p.parse_args()
    if args.smoke:
        args.architectures, args.steps = 4, 4
    info = _common.machine(args.threads)
    results = [
        fidelity(args.smoke, seed, loss, args.architectures, args.steps, args.dynamic == "on")
        for seed in args.seeds
        for loss in args.losses
    ]
    means = {
        loss: round(
            statistics.fmean(r["supernet"]["tau_alone_kd_loss"] for r in results if r["hidden_loss"] == loss),
            4,
        )
        for loss in args.losses
    }
    result = {
        **_common.provenance(NAME, args, info),
        "seeds": args.seeds,
        "mean_tau_kd": means,
        "results": results,
    }
    text = (
        f"Kendall tau between the supernet fitness and the stand-alone score of {args.architectures} "
        f"architectures (each trained alone for {args.steps} steps with the same KD), per hidden loss. "
        "`tau_kd`: against the stand-alone held-out distillation loss; `tau_lm`: against its masked-LM "
        "loss; `params_*`: the parameter count alone as the predictor (the yardstick to beat).\n\n"
        + _common.table(summary_rows(results), COLUMNS)
        + f"\n\nMean tau_kd per loss: {means}.\n"
    )
    _common.write(_common.output_path(args, NAME), result, text)


if __name__ == "__main__":
    main()
