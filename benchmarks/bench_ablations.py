"""Which parts of ELM help? The demo recipe against itself with one part turned off, end to end.

Per seed (each a full repetition of the pipeline, the run seed), the ``demo`` preset's recipe
(PTB, the MiniLM-L6 teacher, the demo space, PCA growth, Pearson hidden distillation, the
multitask stage, evolution by held-out task score, CKA head choice) and five variants, each
changing one part:

- ``no_growth``: the supernet trained without the dynamic dimension (no PCA growth);
- ``no_heads``: the head-choice step off (the search's architecture as found);
- ``mse_kd``: MSE hidden-state distillation instead of the relational (Pearson) loss, in the
  supernet, the multitask stage and retraining;
- ``no_multitask``: no multitask stage; the search ranks paths by held-out distillation loss
  (``kd`` fitness), as the pipeline does without step 2;
- ``random_search``: random search with the same number of evaluations instead of evolution.

What a variant does not change is reused: ``no_heads`` and ``random_search`` start from the full
recipe's trained supernet and multitask stage, ``no_multitask`` from its supernet; ``no_growth``
and ``mse_kd`` train their own supernet (and multitask stage), reusing the full run's fine-tuned
task teachers (they depend on neither). Every found model, and the all-BERT baseline at the full
recipe's found size, is retrained with the retrain stage's loop and budget and scored the same way
(benchmark 8's protocol: elm-eval fine-tune and score per task, label loss, with per-example
predictions; masked-LM loss on PTB test): task score = mean over tasks.

Statistics across seeds: per variant, variant minus full recipe per seed, mean, Student-t 95%
interval and ``scipy.stats.ttest_rel``; the same against the baseline.

Runs go seed by seed (all variants of seed 1, then seed 2, ...) and the result files are rewritten
after every seed, so a partial run is a usable result; everything is cached in the run
directories under ``benchmarks/runs``, so a killed run resumes.

    python benchmarks/bench_ablations.py --threads 1 [--seeds 42 43 44]
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import _common
import bench_decisive
from scipy import stats

import elm_space
import elm_train
from elm_search import Objective
from elm_space import Architecture
from elm_train import baseline_architecture
from elm_train.pipeline import Run, stages
from elm_train.search.fitness import build_fitness
from elm_train.search.head_choice import choose_heads
from elm_train.search.searching import search_constraints, search_space

NAME = "ablations"
VARIANTS = ("full", "no_heads", "random_search", "no_multitask", "no_growth", "mse_kd")
DEFAULT_TASKS = ["tweet-sentiment", "ptb-word-order"]
FULL = {
    "supernet_steps": 50,
    "supernet_epochs": 3,
    "generations": 6,
    "population": 16,
    "task_examples": 80,
    "retrain_steps": 80,
    "train_examples": 400,
    "eval_examples": 1000,
    "lm_documents": 200,
}
"""The full run's sizes (each a command-line option); the demo's are 200 x 3 supernet steps,
10 x 16 evaluations, all held-out rows (300 per task), 400 retraining steps, 1,500 training and
500 validation examples and 500 LM documents. Fewer steps and training examples (the same for
every variant) so that 3 seeds x 6 variants fit about 95 minutes of a 2-core machine shared with
other work; more validation examples than the demo (they are cheap) to cut evaluation noise."""
SMOKE_SIZES = {
    "supernet_steps": 5,
    "supernet_epochs": 2,
    "generations": 2,
    "population": 16,
    "task_examples": 40,
    "retrain_steps": 5,
    "train_examples": 64,
    "eval_examples": 64,
    "lm_documents": 40,
}


def log(seed: int, message: str) -> None:
    print(f"[ablations seed {seed} {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the runs ----------------------------------------------------------------------------------


def config(args: Any, seed: int, variant: str = "full") -> elm_train.RunConfig:
    """The demo recipe at the benchmark's sizes; ``no_growth`` and ``mse_kd`` change the run
    itself (their own supernet), the other variants read the full recipe's run."""
    hidden = "mse" if variant == "mse_kd" else "pearson"
    overrides: dict[str, Any] = {
        "name": f"ablation{'-smoke' if args.smoke else ''}",
        "seed": seed,
        "supernet": {
            "optim": {"epochs": args.supernet_epochs, "max_steps_per_epoch": args.supernet_steps},
            "dynamic": {"enabled": variant != "no_growth"},
        },
        "multitask": {"enabled": True, "optim": {"lr": 5e-4, "epochs": 1}, "heldout_fraction": 0.2},
        # the recipe as measured: CKA re-chose the searched head counts (heads.override_searched),
        # which the pipeline no longer does by default; its default is the no_heads variant here
        "heads": {"override_searched": True},
        "search": {
            "fitness": "task",
            "generations": args.generations,
            "population": args.population,
            "task_examples": args.task_examples,
        },
        "tasks": {
            "tasks": list(args.tasks),
            "max_train_examples": args.train_examples,
            "max_eval_examples": args.eval_examples,
            "hidden_loss": hidden,
        },
        "retrain": {"optim": {"max_steps_per_epoch": args.retrain_steps}},
        "eval": {"lm_documents": args.lm_documents},
    }
    # a smoke run keeps run_config's cuts of data and batches; the sizes above are laid over them
    return _common.run_config(args.smoke, hidden_loss=hidden, dynamic=variant != "no_growth", **overrides)


def share_teachers(source: Run, target: Run) -> None:
    """Copy the fine-tuned task teachers of ``source`` into ``target`` (same seed, tasks, data and
    teacher settings: the same models), so the target's multitask stage does not fine-tune them
    again. The model directory is copied last: its ``config.json`` says the teacher is done."""
    for name in target.config.multitask_task_names:
        if (target.layout.task_model(name, "teacher") / "config.json").is_file():
            continue
        if not (source.layout.task_model(name, "teacher") / "config.json").is_file():
            continue
        target.layout.task_dir(name).mkdir(parents=True, exist_ok=True)
        for path in (source.layout.task_selection, source.layout.task_loss_curve):
            shutil.copy2(path(name, "teacher"), target.layout.task_dir(name))
        tmp = target.layout.task_model(name, "teacher").with_name("teacher.copying")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source.layout.task_model(name, "teacher"), tmp)
        tmp.rename(target.layout.task_model(name, "teacher"))


def heads(run: Run, arch: Architecture) -> Architecture:
    """The heads stage's CKA head choice for ``arch`` (same supernet, batches and threshold)."""
    cfg = run.config
    val = elm_train.eval_batches(run.blocks["validation"], cfg.deepspeed.micro_batch_size, cfg.heads.batches)
    return choose_heads(stages.supernet.trained_supernet(run).model, arch, val, cfg.heads.cka_threshold)[0]


def search(run: Run, fitness: str, algorithm: str) -> dict[str, Any]:
    """The search stage's search with another fitness or algorithm on the run's supernet (and
    multitask stage for ``task``), the same settings and budget; cached in the run directory."""
    cfg = run.config
    settings = cfg.search.model_copy(update={"fitness": fitness, "algorithm": algorithm})
    if algorithm != "evolution":
        settings = settings.model_copy(update={"options": {}})
    key = f"ablation-search-{fitness}-{algorithm}-g{settings.generations}p{settings.population}"
    bench = run.dir / "bench"
    bench.mkdir(parents=True, exist_ok=True)

    def compute() -> dict[str, Any]:
        start = time.perf_counter()
        space = stages.supernet.grown_space(run)
        fit = build_fitness(settings, stages.search.FitnessFromRun(run))  # the search stage's inputs
        objective = Objective(fit.name, fit, maximize=fit.maximize)
        constraints = search_constraints(space, settings, cfg.data.block_size)
        result = search_space(
            space, objective, settings, cfg.seed, constraints, bench / f"{key}.state", progress=False
        )
        assert result.best is not None
        return {
            "architecture": result.best.architecture.model_dump(mode="json"),
            "value": result.best.values[fit.name],
            "evaluations": result.evaluations,
            "seconds": round(time.perf_counter() - start, 2),
        }

    return _common.cached(bench / f"{key}.json", compute)


def pipeline_found(run: Run) -> tuple[Architecture, Architecture]:
    """The pipeline's own stages up to the head choice: (searched, after head choice)."""
    _common.stages(run, "data", "teacher", "supernet", "multitask", "search", "heads")
    return stages.search.found_architecture(run), stages.heads.final_architecture(run)


def score(run: Run, arch: Architecture, seed: int, watch: _common.Stopwatch) -> dict[str, Any]:
    """Retrain and evaluate ``arch`` in ``run`` (benchmark 8's protocol, cached there)."""
    e = bench_decisive.evaluate(run, arch, seed, watch)
    task_scores = {t: r["score"] for t, r in e["tasks"].items()}
    return {
        "architecture": arch.to_string(),
        "params": elm_space.count_params(arch),
        "task_scores": task_scores,
        "task_score": statistics.fmean(task_scores.values()),
        "lm_loss": e["trained"]["lm_loss"],
        "kd_loss": e["trained"]["kd_loss"],
        "run_dir": str(run.dir),
    }


def run_seed(args: Any, seed: int) -> dict[str, Any]:
    """Every variant of one seed, in the order that reuses the most; each model scored once."""
    watch = _common.Stopwatch()
    full = _common.open_run(config(args, seed))
    log(seed, f"full recipe: {full.dir}")
    searched, chosen = pipeline_found(full)
    watch.lap("full: stages to heads")
    models: dict[str, dict[str, Any]] = {}
    archs: dict[str, Architecture] = {"full": chosen}
    models["full"] = score(full, chosen, seed, watch)
    log(
        seed,
        f"full: {chosen.to_string()} task {models['full']['task_score']:.4f} lm {models['full']['lm_loss']:.4f}",
    )
    base = baseline_architecture(full.grown_space(), elm_space.count_params(chosen))
    models["baseline"] = score(full, base, seed, watch)
    archs["baseline"] = base
    # variants on the full recipe's supernet and multitask stage
    archs["no_heads"] = searched
    rnd = search(full, "task", "random")
    archs["random_search"] = heads(full, Architecture.model_validate(rnd["architecture"]))
    kd = search(full, "kd", "evolution")
    archs["no_multitask"] = heads(full, Architecture.model_validate(kd["architecture"]))
    watch.lap("searches on the full supernet")
    for variant in ("no_heads", "random_search", "no_multitask"):
        models[variant] = score(full, archs[variant], seed, watch)
        log(seed, f"{variant}: {archs[variant].to_string()} task {models[variant]['task_score']:.4f}")
    # variants with their own supernet
    for variant in ("no_growth", "mse_kd"):
        own = _common.open_run(config(args, seed, variant))
        _common.stages(own, "data", "teacher")
        share_teachers(full, own)
        _, archs[variant] = pipeline_found(own)
        watch.lap(f"{variant}: stages to heads")
        models[variant] = score(own, archs[variant], seed, watch)
        log(seed, f"{variant}: {archs[variant].to_string()} task {models[variant]['task_score']:.4f}")
    searches = {"random_search": rnd, "no_multitask": kd}
    return {
        "seed": seed,
        "models": models,
        "searches": {k: {x: v[x] for x in ("value", "evaluations", "seconds")} for k, v in searches.items()},
        "head_choice": {
            "full": {"searched": searched.to_string(), "chosen": chosen.to_string()},
        },
        "seconds": watch.seconds,
    }


# --- statistics ---------------------------------------------------------------------------------


def compare(results: list[dict[str, Any]], variant: str, other: str, metric: str) -> dict[str, Any]:
    """Per-seed ``variant - other`` of ``metric``: t-interval and paired t-test over seeds."""
    a = [r["models"][variant][metric] for r in results]
    b = [r["models"][other][metric] for r in results]
    out = bench_decisive.t_interval([x - y for x, y in zip(a, b, strict=True)])
    out["per_seed"] = [round(x - y, 5) for x, y in zip(a, b, strict=True)]
    p = stats.ttest_rel(a, b).pvalue if len(a) > 1 else None
    out["ttest_rel_p"] = None if p is None or p != p else float(p)  # NaN: identical on every seed
    return out


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in (*VARIANTS, "baseline"):
        out[variant] = {
            "task_score_mean": statistics.fmean(r["models"][variant]["task_score"] for r in results),
            "lm_loss_mean": statistics.fmean(r["models"][variant]["lm_loss"] for r in results),
            "params_mean": statistics.fmean(r["models"][variant]["params"] for r in results),
        }
        for metric in ("task_score", "lm_loss"):
            if variant != "full":
                out[variant][f"{metric}_vs_full"] = compare(results, variant, "full", metric)
            if variant != "baseline":
                out[variant][f"{metric}_vs_baseline"] = compare(results, variant, "baseline", metric)
    return out


# --- output -------------------------------------------------------------------------------------


def fmt(x: Any, digits: int = 4) -> str:
    return bench_decisive.fmt(x, digits)


def verdict(entry: dict[str, Any], higher_better: bool) -> str:
    """``helps``/``hurts`` when the t-interval of the difference excludes 0, else ``noise``
    (turning the part off: positive task score or negative LM loss means the part hurts)."""
    ci = entry.get("ci95")
    if not ci or ci[0] <= 0 <= ci[1]:
        return "inside the noise"
    off_better = (ci[0] > 0) == higher_better
    return "the part hurts" if off_better else "the part helps"


def markdown(result: dict[str, Any]) -> str:
    s, rs, a = result["summary"], result["results"], result["settings"]
    lines = [
        f"Seeds completed: {[r['seed'] for r in rs]}. Sizes: {a}.",
        "",
        "Each variant turns one part of the demo recipe off; difference = variant minus the full recipe "
        "per seed (task score: mean over tasks of each task's metric, higher is better; LM loss: masked-LM "
        "loss on PTB test, lower is better); mean, Student-t 95% interval and paired t-test over seeds. "
        "Verdict: whether the interval excludes 0 (a part *helps* when turning it off makes the model worse).",
        "",
        "| variant | task score (mean) | diff vs full | t 95% CI | p | LM loss (mean) | diff vs full | t 95% CI | p "
        "| task verdict | LM verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in (*VARIANTS, "baseline"):
        e = s[v]
        if v == "full":
            lines.append(
                f"| full | {e['task_score_mean']:.4f} | - | - | - | {e['lm_loss_mean']:.4f} | - | - | - | - | - |"
            )
            continue
        t, lm = e["task_score_vs_full"], e["lm_loss_vs_full"]
        lines.append(
            f"| {v} | {e['task_score_mean']:.4f} | {fmt(t['mean'])} | {fmt(t['ci95'])} | {fmt(t['ttest_rel_p'], 0)} "
            f"| {e['lm_loss_mean']:.4f} | {fmt(lm['mean'])} | {fmt(lm['ci95'])} | {fmt(lm['ttest_rel_p'], 0)} "
            f"| {verdict(t, True)} | {verdict(lm, False)} |"
        )
    lines += [
        "",
        "Against the all-BERT baseline (at the full recipe's found size, retrained from its supernet):",
        "",
        "| variant | task diff vs baseline | t 95% CI | p | LM diff vs baseline | t 95% CI | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        t, lm = s[v]["task_score_vs_baseline"], s[v]["lm_loss_vs_baseline"]
        lines.append(
            f"| {v} | {fmt(t['mean'])} | {fmt(t['ci95'])} | {fmt(t['ttest_rel_p'], 0)} "
            f"| {fmt(lm['mean'])} | {fmt(lm['ci95'])} | {fmt(lm['ttest_rel_p'], 0)} |"
        )
    lines += ["", "## Per seed", ""]
    for r in rs:
        rows = [{"variant": v, **m, **m["task_scores"]} for v, m in r["models"].items()]
        cols = ["variant", "architecture", "params", *a["tasks"], "task_score", "lm_loss", "kd_loss"]
        lines += [f"Seed {r['seed']} (seconds per phase: {r['seconds']}):", "", _common.table(rows, cols), ""]
    return "\n".join(lines)


def merge(args: Any, out: Path) -> None:
    """One result from per-seed result files (their seeds in the given order); each part keeps its
    own command and machine record under ``parts``, the sizes must agree."""
    parts = [json.loads(path.read_text()) for path in args.merge]
    settings = {json.dumps(part["settings"], sort_keys=True) for part in parts}
    if len(settings) != 1:
        raise SystemExit(f"the files were run with different sizes: {sorted(settings)}")
    results = [r for part in parts for r in part["results"]]
    result = {
        **_common.provenance(NAME, args, parts[0]["machine"]),
        "seeds": [r["seed"] for r in results],
        "settings": parts[0]["settings"],
        "parts": [
            {k: part[k] for k in ("command", "machine", "seeds", "wall_seconds")} | {"file": str(path)}
            for part, path in zip(parts, args.merge, strict=True)
        ],
        "summary": summarise(results),
        "results": results,
    }
    _common.write(out, result, markdown(result))


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME, threads=1)
    p.set_defaults(seeds=[42, 43, 44])
    p.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, help="elm-eval task names")
    for key, value in FULL.items():
        p.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=f"default {value}")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="only merge result files of single seeds (written by separate processes, --out) into one",
    )
    args = p.parse_args()
    for key, value in FULL.items():
        if getattr(args, key) is None:
            setattr(args, key, SMOKE_SIZES[key] if args.smoke else value)
    info = _common.machine(args.threads)
    out = _common.output_path(args, NAME)
    if args.merge:
        merge(args, out)
        return
    results: list[dict[str, Any]] = []
    start = time.perf_counter()
    for seed in args.seeds:
        results.append(run_seed(args, seed))
        result = {
            **_common.provenance(NAME, args, info),
            "seeds": [r["seed"] for r in results],
            "seeds_requested": args.seeds,
            "settings": {k: getattr(args, k) for k in FULL} | {"tasks": args.tasks},
            "wall_seconds": round(time.perf_counter() - start, 1),
            "summary": summarise(results),
            "results": results,
        }
        _common.write(out, result, markdown(result))


if __name__ == "__main__":
    main()
