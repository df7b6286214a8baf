"""The dynamic dimension (PCA-ranked FFN growth) on or off, at the same budget: its effect on the
ranking fidelity (benchmark 4, Pearson loss) and on the end-to-end result (benchmark 5).

Both settings train for the same steps under the same parameter budget; only growth differs.
This script calls the two benchmarks' own functions, and their run directories are shared: after
``bench_ranking_fidelity.py`` and ``bench_end_to_end.py`` with the same settings, the "on" side
is read back from their cache and only the "off" side is computed. By default no random
architectures are retrained (``--randoms``): the comparison is between the found models.

    python benchmarks/bench_dynamic_dimension.py [--architectures 12 --steps 100 --randoms 0]
"""

from __future__ import annotations

from typing import Any

import _common
import bench_end_to_end as end_to_end
import bench_ranking_fidelity as ranking

NAME = "dynamic_dimension"


def row(setting: str, fidelity: dict[str, Any], e2e: dict[str, Any]) -> dict[str, Any]:
    found = next(m for m in e2e["models"] if m["model"] == "found")
    baseline = next(m for m in e2e["models"] if m["model"] == "baseline")
    return {
        "dynamic": setting,
        "grown_pairs": e2e["supernet_stage"]["grown_pairs"],
        "tau_kd": fidelity["supernet"]["tau_alone_kd_loss"],
        "tau_lm": fidelity["supernet"]["tau_alone_lm_loss"],
        "found_architecture": found["architecture"],
        "found_params": found["params"],
        "found_task_score": found["task_score"],
        "found_lm_loss": found["lm_loss"],
        "found_latency_ms": found["latency_ms"],
        "baseline_task_score": baseline["task_score"],
        "baseline_lm_loss": baseline["lm_loss"],
    }


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME)
    p.set_defaults(seeds=[42])
    p.add_argument("--architectures", type=int, default=12)
    p.add_argument("--steps", type=int, default=100, help="training steps of each stand-alone model")
    p.add_argument("--randoms", type=int, default=0, help="random architectures retrained per setting")
    args = p.parse_args()
    if args.smoke:
        args.architectures, args.steps = 4, 4
    info = _common.machine(args.threads)
    rows, details = [], []
    for seed in args.seeds:
        for dynamic in (True, False):
            fidelity = ranking.fidelity(args.smoke, seed, "pearson", args.architectures, args.steps, dynamic)
            e2e = end_to_end.end_to_end(args.smoke, seed, args.randoms, dynamic)
            rows.append({"seed": seed, **row("on" if dynamic else "off", fidelity, e2e)})
            details.append(
                {"seed": seed, "dynamic": dynamic, "ranking_fidelity": fidelity, "end_to_end": e2e}
            )
    result = {
        **_common.provenance(NAME, args, info),
        "seeds": args.seeds,
        "summary": rows,
        "details": details,
    }
    columns = [
        "seed",
        "dynamic",
        "grown_pairs",
        "tau_kd",
        "tau_lm",
        "found_params",
        "found_task_score",
        "found_lm_loss",
        "found_latency_ms",
        "baseline_task_score",
        "baseline_lm_loss",
    ]
    text = (
        f"Dynamic dimension on vs off. Ranking fidelity: Pearson-loss supernet, {args.architectures} "
        f"architectures trained alone for {args.steps} steps (Kendall tau). End to end: found model and "
        "all-BERT baseline under the found model's parameters, each retrained with the same budget.\n\n"
        + _common.table(rows, columns)
        + "\n\nFound architectures: "
        + "; ".join(f"{r['dynamic']}: `{r['found_architecture']}`" for r in rows)
        + "\n"
    )
    _common.write(_common.output_path(args, NAME), result, text)


if __name__ == "__main__":
    main()
