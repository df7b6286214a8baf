"""Decisive end to end on a deeper space, and ranking fidelity of every search fitness.

Two questions, one run per seed (each seed a full repetition of the pipeline):

A. Does the found model beat the hand-designed one and random ones of its size, by more than the
   noise? The demo space stacked to ``--layers`` (6) layers (the demo's parameter budget per layer,
   like ``bench_search_efficiency.py --layers``), evaluation sets of ``--eval-examples`` (2000)
   validation examples per task and ``--lm-documents`` (2000) PTB test documents, ``--seeds``
   (42 43 44). Found (the ``--primary`` fitness's search, ``task`` by default, as the demo and paper presets search)
   minus the all-BERT baseline (``elm_train.baseline_architecture`` at the found model's size) and
   minus the median of ``--randoms`` (8) random architectures with 90-100% of its parameters: task
   score (mean over tasks) and masked-LM loss; per seed, across seeds (t-interval, paired t-test)
   and over the evaluation examples pooled across seeds (paired bootstrap, McNemar).

B. How well does each search fitness rank architectures, and what does each one find? After the
   supernet and multitask stages, one search per fitness (``kd``, ``task``, ``wpca``, ``params``;
   same searcher, settings and budget, all on the one trained supernet), each found model retrained
   and evaluated end to end beside the baseline and the randoms. All distinct retrained models of
   a seed (at least ``--min-ranked``, 12) are the ranking set: each is scored by every fitness and
   Kendall tau is taken against its stand-alone task score and its stand-alone LM loss; the cost
   of one fitness evaluation is measured too.

Every model is retrained with the retrain stage's loop and budget (``--retrain-steps``), extracted
from the supernet; task scores are elm-eval's fine-tune-and-score (label loss) on
``--train-examples`` training examples. ``--jobs 2`` runs seeds in parallel worker processes (this
script, one per seed), then merges. Everything is cached under the run directories, so a killed
run resumes.

    python benchmarks/bench_decisive.py --threads 1 --jobs 2 [--seeds 42 43 44 --tasks tweet-sentiment ptb-word-order]
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _common
import numpy as np
import torch
from bench_end_to_end import random_architectures
from bench_search_efficiency import deeper_demo
from scipy import stats

import elm_eval
import elm_space
import elm_train
from elm_eval.finetune import _Encoded, _tokenizer_with_padding, predict
from elm_eval.lm import masked_lm_inputs
from elm_eval.loading import forward_kwargs, load_model, load_tokenizer, output_logits
from elm_search import Objective
from elm_space import Architecture
from elm_train import baseline_architecture, task_spec
from elm_train.pipeline import Run, stages
from elm_train.search.fitness import ParamsFitness, build_fitness
from elm_train.search.searching import search_constraints, search_space

NAME = "decisive"
FITNESSES = ("kd", "task", "wpca", "params")
DEFAULT_TASKS = ["tweet-sentiment", "ptb-word-order"]
BOOTSTRAP = 2000
FULL = {
    "layers": 6,
    "multitask_epochs": 1,
    "multitask_steps": None,
    "generations": 10,
    "population": 16,
    "retrain_steps": 200,
    "train_examples": 1500,
    "eval_examples": 2000,
    "lm_documents": 2000,
    "randoms": 8,
    "min_ranked": 12,
}
"""The full run's sizes (each a command-line option); ``--smoke`` replaces them by SMOKE_SIZES."""
SMOKE_SIZES = {
    "multitask_epochs": 1,
    "multitask_steps": 8,
    "generations": 2,
    "retrain_steps": 5,
    "train_examples": 64,
    "eval_examples": 200,
    "lm_documents": 100,
    "randoms": 2,
    "min_ranked": 4,
}


def log(seed: int, message: str) -> None:
    print(f"[decisive seed {seed}] {message}", flush=True)


# --- the run ---------------------------------------------------------------------------------


def config(args: Any, seed: int) -> elm_train.RunConfig:
    """The demo run on the deeper space with the multitask stage on and the benchmark's sizes."""
    overrides: dict[str, Any] = {
        "name": "decisive-smoke" if args.smoke else "decisive",
        "seed": seed,
        "space": deeper_demo(args.layers).model_dump(mode="json"),
        "tasks": {
            "tasks": list(args.tasks),
            "max_train_examples": args.train_examples,
            "max_eval_examples": args.eval_examples,
        },
        "multitask": {
            "enabled": True,
            "optim": {
                "lr": 4e-4,
                "epochs": args.multitask_epochs,
                "max_steps_per_epoch": args.multitask_steps,
            },
            "heldout_fraction": 0.2,
        },
        "search": {"generations": args.generations, "population": args.population},
        "retrain": {"optim": {"max_steps_per_epoch": args.retrain_steps}},
        "eval": {"lm_documents": args.lm_documents},
    }
    return _common.run_config(args.smoke, **overrides)


class TimedFitness:
    """A fitness computed once per architecture, with the seconds each computation took."""

    def __init__(self, fitness: Any) -> None:
        self.fitness = fitness
        self.name, self.maximize = fitness.name, fitness.maximize
        self.values: dict[str, float] = {}
        self.seconds: list[float] = []

    def __call__(self, arch: Architecture) -> float:
        key = arch.stable_hash()
        if key not in self.values:
            start = time.perf_counter()
            value = float(self.fitness(arch))
            self.seconds.append(time.perf_counter() - start)
            self.values[key] = value
        return self.values[key]

    def seconds_per_eval(self) -> float | None:
        return round(statistics.fmean(self.seconds), 5) if self.seconds else None


def fitnesses(run: Run) -> dict[str, TimedFitness]:
    """The four search fitnesses, all on this run's one trained (and multitask-trained) supernet."""
    cfg = run.config
    inputs = stages.search.FitnessFromRun(run)  # what the search stage scores with
    out = {}
    for name in ("kd", "wpca", "task"):
        out[name] = TimedFitness(build_fitness(cfg.search.model_copy(update={"fitness": name}), inputs))
    out["params"] = TimedFitness(ParamsFitness())
    return out


def search(run: Run, name: str, fitness: TimedFitness, seed: int) -> dict[str, Any]:
    """The configured searcher over the trained supernet's space with one fitness (cached)."""
    cfg = run.config
    space = stages.supernet.grown_space(run)
    key = f"decisive-search-{name}-{cfg.search.algorithm}-g{cfg.search.generations}p{cfg.search.population}"
    bench = run.dir / "bench"
    bench.mkdir(parents=True, exist_ok=True)

    def compute() -> dict[str, Any]:
        start = time.perf_counter()
        objective = Objective(fitness.name, fitness, maximize=fitness.maximize)
        constraints = search_constraints(space, cfg.search, cfg.data.block_size)
        result = search_space(
            space, objective, cfg.search, cfg.seed, constraints, bench / f"{key}.state", progress=False
        )
        assert result.best is not None
        return {
            "fitness": name,
            "architecture": result.best.architecture.model_dump(mode="json"),
            "value": result.best.values[fitness.name],
            "params": result.best.params,
            "evaluations": result.evaluations,
            "seconds": round(time.perf_counter() - start, 2),
        }

    found = _common.cached(bench / f"{key}.json", compute)
    log(
        seed,
        f"search {name}: {found['params']:,} params, {fitness.name} {found['value']:.5g}, {found['seconds']} s",
    )
    return found


# --- evaluation with per-example results -------------------------------------------------------

_TASK_DATA: dict[tuple, elm_eval.TaskData] = {}


def task_data(run: Run, name: str) -> elm_eval.TaskData:
    """A task's data with the run's caps, loaded once per process; no test split (not scored)."""
    spec = task_spec(name, run.config.tasks)
    key = (name, spec.max_train_examples, spec.max_validation_examples)
    if key not in _TASK_DATA:
        _TASK_DATA[key] = dataclasses.replace(elm_eval.load_task_data(spec), test=None)
    return _TASK_DATA[key]


def digest(values: Any) -> str:
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


def task_result(run: Run, model_dir: str, name: str) -> dict[str, Any]:
    """elm-eval's fine-tune and score (the tasks stage's budget, label loss), plus the fine-tuned
    classifier's prediction for every validation example (the score's own predictions: checked)."""
    settings = _common.finetune_settings(run)
    data = task_data(run, name)
    start = time.perf_counter()
    result, classifier = elm_eval.finetune(model_dir, model_dir, data, settings)
    finetune_seconds = time.perf_counter() - start
    tok = _tokenizer_with_padding(load_tokenizer(model_dir))
    regression = data.spec.task_type == "regression"
    start = time.perf_counter()
    predictions = predict(
        classifier,
        _Encoded(tok, data.validation, settings.max_length),
        regression,
        settings.eval_batch_size,
        torch.device("cpu"),
    )
    predict_seconds = time.perf_counter() - start
    labels = list(data.validation.labels or [])
    score = elm_eval.compute_metric(data.spec.metric, predictions, labels)[0]
    if not math.isclose(score, result.score, abs_tol=1e-9) and not (
        math.isnan(score) and math.isnan(result.score)
    ):
        raise AssertionError(f"{name}: re-predicted score {score} differs from elm-eval's {result.score}")
    return {
        "task": name,
        "metric": data.spec.metric,
        "score": result.score,
        "num_train_examples": result.num_train_examples,
        "num_validation_examples": result.num_validation_examples,
        "finetune_seconds": round(finetune_seconds, 2),
        "predict_seconds": round(predict_seconds, 2),
        "predictions": predictions,
        "labels": labels,
        "examples_digest": digest([list(data.validation.text_a), labels]),
    }


@torch.inference_mode()
def lm_per_sequence(run: Run, model_dir: str) -> dict[str, Any]:
    """elm-eval's masked-LM protocol (same texts, tokenisation, masks and batches as
    ``_common.lm_loss``), keeping each sequence's summed loss and scored-token count."""
    cfg = elm_eval.MaskedLMConfig(
        max_length=run.config.data.block_size,
        masking=elm_eval.MaskingConfig(seed=run.config.seed),
        progress=False,
    )
    texts = elm_train.heldout_texts(run.config.data, run.config.eval.lm_documents)
    start = time.perf_counter()
    module = load_model(model_dir, "masked-lm").eval()
    tok = load_tokenizer(model_dir)
    inputs, labels = masked_lm_inputs(tok, texts, cfg)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    nll: list[float] = []
    count: list[int] = []
    for first in range(0, len(inputs), cfg.batch_size):
        rows = slice(first, first + cfg.batch_size)
        width = max(len(r) for r in inputs[rows])
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in inputs[rows]])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in inputs[rows]])
        target = torch.tensor([r + [-100] * (width - len(r)) for r in labels[rows]])
        logits = output_logits(
            module(**forward_kwargs(module, {"input_ids": ids, "attention_mask": mask})), module
        )
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            target.reshape(-1),
            ignore_index=-100,
            reduction="none",
        ).reshape(target.shape)
        nll.extend(loss.sum(1).tolist())
        count.extend((target != -100).sum(1).tolist())
    return {
        "documents": len(texts),
        "sequences": len(inputs),
        "loss": sum(nll) / sum(count),
        "nll": nll,
        "tokens": count,
        "texts_digest": digest(texts),
        "seconds": round(time.perf_counter() - start, 2),
    }


_LM_CHECKED: set[str] = set()


def evaluate(run: Run, arch: Architecture, seed: int, watch: _common.Stopwatch) -> dict[str, Any]:
    """Retrain ``arch`` (cached by _common.retrain; its LM loss from the per-sequence pass), then its
    task scores with per-example predictions (cached beside it). The per-sequence LM loss is checked
    against elm-eval's ``masked_lm_perplexity`` on the first model each process scores."""
    docs = run.config.eval.lm_documents

    def lm_file(model_dir: str) -> Path:
        return Path(model_dir).parent / f"decisive-lm-{docs}.json"

    def lm(run: Run, model_dir: str) -> float:
        return _common.cached(lm_file(model_dir), lambda: lm_per_sequence(run, model_dir))["loss"]

    trained = _common.retrain(run, "bench", arch, run.config.retrain.init, lm=lm)
    watch.lap("retrain and LM loss")
    out = Path(trained["model_dir"]).parent
    tasks = {}
    for name in run.config.task_names:
        tasks[name] = _common.cached(
            out
            / f"decisive-task-{name}-{run.config.tasks.max_train_examples}-{run.config.tasks.max_eval_examples}.json",
            lambda n=name: task_result(run, trained["model_dir"], n),
        )
    watch.lap("task fine-tune and predict")
    per_sequence = _common.cached(
        lm_file(trained["model_dir"]), lambda: lm_per_sequence(run, trained["model_dir"])
    )
    if str(run.dir) not in _LM_CHECKED:
        reference = _common.lm_loss(run, trained["model_dir"])
        if not math.isclose(per_sequence["loss"], reference, rel_tol=1e-4):
            raise AssertionError(
                f"per-sequence LM loss {per_sequence['loss']} differs from elm-eval's {reference}"
            )
        _LM_CHECKED.add(str(run.dir))
        watch.lap("LM loss check against elm-eval")
    return {"trained": trained, "tasks": tasks, "lm": per_sequence}


def is_path(space: elm_space.SearchSpace, arch: Architecture) -> bool:
    """Whether every layer of ``arch`` is one of the (grown) space's candidates, as they are."""
    return all(choice in space.options(i) for i, choice in enumerate(arch.layers))


def run_seed(args: Any, seed: int, part: str = "all") -> dict[str, Any]:
    """One full repetition: stages, four searches, retrain and evaluate every model, rank.

    ``part`` splits it for worker processes: ``prepare`` (stages and searches), ``eval:K/N`` (the
    K-th of N shares of the models, by architecture), ``all`` (everything; what the workers did
    is read from the caches)."""
    watch = _common.Stopwatch()
    run = _common.open_run(config(args, seed))
    log(seed, f"run directory {run.dir}")
    _common.stages(run, "data")
    watch.lap("data")
    _common.stages(run, "supernet")
    watch.lap("supernet")
    _common.stages(run, "multitask")
    watch.lap("multitask (task teachers + multitask training)")
    fits = fitnesses(run)
    watch.lap("fitness setup")
    found = {}
    for name in FITNESSES:
        found[name] = search(run, name, fits[name], seed)
        watch.lap(f"search {name}")
    if part == "prepare":
        return {"seed": seed, "part": part, "seconds": watch.seconds}
    space = stages.supernet.grown_space(run)
    primary = Architecture.model_validate(found[args.primary]["architecture"])
    params = elm_space.count_params(primary)
    models: dict[str, Architecture] = {
        f"found_{f}": Architecture.model_validate(found[f]["architecture"]) for f in FITNESSES
    }
    models["baseline"] = baseline_architecture(space, params)
    randoms = random_architectures(space, params, args.randoms, seed)
    models.update({f"random{i}": a for i, a in enumerate(randoms)})
    # the ranking set: distinct models that are paths of the supernet (the baseline is often read
    # at a narrower width than any candidate, which no supernet fitness can score)
    distinct = {a.stable_hash() for a in models.values() if is_path(space, a)}
    extra = 0
    while len(distinct) < args.min_ranked:  # found models coincided: top up the ranking set
        extra += 1
        arch = random_architectures(space, params, args.randoms + extra, seed)[-1]
        models[f"extra{extra}"] = arch
        distinct.add(arch.stable_hash())
    if part.startswith("eval:"):
        k, n = (int(x) for x in part.removeprefix("eval:").split("/"))
        hashes = sorted({a.stable_hash() for a in models.values()})
        for arch in {a.stable_hash(): a for a in models.values()}.values():
            if hashes.index(arch.stable_hash()) % n == k:
                evaluate(run, arch, seed, watch)
                log(seed, f"evaluated {arch.to_string()}")
        return {"seed": seed, "part": part, "seconds": watch.seconds}
    evaluated: dict[str, dict[str, Any]] = {}
    rows = []
    for i, (name, arch) in enumerate(models.items()):
        key = arch.stable_hash()
        if key not in evaluated:
            evaluated[key] = evaluate(run, arch, seed, watch)
        e = evaluated[key]
        task_scores = {t: r["score"] for t, r in e["tasks"].items()}
        rows.append(
            {
                "model": name,
                "architecture": arch.to_string(),
                "hash": key,
                "params": elm_space.count_params(arch),
                "task_scores": task_scores,
                "task_score": statistics.fmean(task_scores.values()),
                "lm_loss": e["trained"]["lm_loss"],
                "kd_loss": e["trained"]["kd_loss"],
                "train_seconds": e["trained"]["train_seconds"],
            }
        )
        r = rows[-1]
        log(
            seed,
            f"{i + 1}/{len(models)} {name}: {r['params']:,} params, task {r['task_score']:.4f}, lm {r['lm_loss']:.4f}",
        )
    ranked = []  # the ranking set: distinct architectures, first name wins
    seen = set()
    for row in rows:
        if row["hash"] in seen or not is_path(space, models[row["model"]]):
            continue
        seen.add(row["hash"])
        arch = models[row["model"]]
        ranked.append({**row, "fitness": {f: fits[f](arch) for f in FITNESSES}})
    watch.lap("fitness of the ranking set")
    ranking = ranking_fidelity(ranked)
    log(seed, "tau vs task score: " + ", ".join(f"{f} {ranking[f]['tau_task_score']}" for f in FITNESSES))
    per_example = {
        "tasks": {
            t: {
                "labels": next(iter(evaluated.values()))["tasks"][t]["labels"],
                "metric": next(iter(evaluated.values()))["tasks"][t]["metric"],
                "digest": next(iter(evaluated.values()))["tasks"][t]["examples_digest"],
                "predictions": {r["model"]: evaluated[r["hash"]]["tasks"][t]["predictions"] for r in rows},
            }
            for t in run.config.task_names
        },
        "lm": {
            "digest": next(iter(evaluated.values()))["lm"]["texts_digest"],
            "nll": {r["model"]: evaluated[r["hash"]]["lm"]["nll"] for r in rows},
            "tokens": {r["model"]: evaluated[r["hash"]]["lm"]["tokens"] for r in rows},
        },
    }
    path = run.dir / "bench" / "decisive-per-example.json"
    elm_train.write_json_atomic(path, per_example)
    any_eval = next(iter(evaluated.values()))
    return {
        "seed": seed,
        "run_dir": str(run.dir),
        "per_example_file": str(path),
        "space": space.name,
        "space_size": space.size(),
        "param_budget": space.param_budget,
        "primary": args.primary,
        "found_params": params,
        "baseline_within_budget": elm_space.count_params(models["baseline"]) <= params,
        "baseline_is_supernet_path": is_path(space, models["baseline"]),
        "not_ranked": [m for m, a in models.items() if not is_path(space, a)],
        "stages": {s: run.done_info(s) for s in ("supernet", "multitask")},
        "searches": found,
        "models": rows,
        "ranking_set": ranked,
        "ranking": ranking,
        "fitness_seconds_per_eval": {f: fits[f].seconds_per_eval() for f in FITNESSES},
        "fitness_evaluations": {f: len(fits[f].seconds) for f in FITNESSES},
        "eval_sizes": {
            **{t: r["num_validation_examples"] for t, r in any_eval["tasks"].items()},
            "lm_documents": any_eval["lm"]["documents"],
            "lm_sequences": any_eval["lm"]["sequences"],
        },
        "unit_inputs": unit_inputs(run, evaluated, fits),
        "unit_seconds": units(unit_inputs(run, evaluated, fits), watch.seconds),
        "seconds": watch.seconds,
    }


def unit_inputs(run: Run, evaluated: dict, fits: dict) -> dict[str, Any]:
    """What the unit costs are computed from, besides the phases' seconds (see :func:`units`)."""
    e = list(evaluated.values())
    tasks = [r for x in e for r in x["tasks"].values()]
    supernet = run.done_info("supernet")
    return {
        "supernet_steps": supernet.get("steps") or supernet.get("total_steps"),
        "multitask_steps": run.done_info("multitask").get("steps"),
        "retrain_per_step": round(
            statistics.fmean(x["trained"]["train_seconds"] / x["trained"]["steps"] for x in e), 4
        ),
        "predict_per_example": round(
            statistics.fmean(r["predict_seconds"] / r["num_validation_examples"] for r in tasks), 6
        ),
        "finetune_total_per_task": round(statistics.fmean(r["finetune_seconds"] for r in tasks), 2),
        "finetune_train_examples": tasks[0]["num_train_examples"],
        "finetune_validation_examples": tasks[0]["num_validation_examples"],
        "finetune_epochs": run.config.tasks.optim.epochs,
        "lm_per_document": round(statistics.fmean(x["lm"]["seconds"] / x["lm"]["documents"] for x in e), 5),
        "fitness_per_eval": {f: fits[f].seconds_per_eval() for f in fits},
        "models_evaluated": len(e),
    }


def units(inputs: dict[str, Any], seconds: dict[str, float]) -> dict[str, Any]:
    """Measured cost per unit of work (per step, example, document, evaluation), to scale a smoke
    run to the full run's sizes; ``seconds`` are the phases' (a cached phase reads ~0)."""
    out = dict(inputs)
    steps = inputs["supernet_steps"]
    out["supernet_per_step"] = round(seconds.get("supernet", 0.0) / steps, 4) if steps else None
    out["multitask_stage"] = seconds.get("multitask (task teachers + multitask training)", 0.0)
    # fine-tune = train (epochs x train examples) + one validation pass per epoch
    per_task_eval = (
        inputs["predict_per_example"] * inputs["finetune_validation_examples"] * inputs["finetune_epochs"]
    )
    out["finetune_per_train_example_epoch"] = round(
        max(0.0, inputs["finetune_total_per_task"] - per_task_eval)
        / (inputs["finetune_epochs"] * inputs["finetune_train_examples"]),
        6,
    )
    return out


# --- statistics ---------------------------------------------------------------------------------


def oriented(values: list[float], higher_better: bool) -> list[float]:
    return list(values) if higher_better else [-v for v in values]


def kendall(x: list[float], y: list[float]) -> float | None:
    tau = stats.kendalltau(x, y).statistic
    return None if tau is None or math.isnan(tau) else round(float(tau), 4)


def ranking_fidelity(ranked: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Kendall tau (b) of each fitness, oriented so that higher predicts better, against the
    stand-alone task score (higher better) and LM loss (oriented: lower better)."""
    task = [r["task_score"] for r in ranked]
    lm = oriented([r["lm_loss"] for r in ranked], higher_better=False)
    out = {}
    for f in FITNESSES:
        maximize = {"kd": False}.get(f, True)
        x = oriented([r["fitness"][f] for r in ranked], maximize)
        out[f] = {"tau_task_score": kendall(x, task), "tau_lm_loss": kendall(x, lm), "n": len(ranked)}
    return out


def t_interval(diffs: list[float]) -> dict[str, Any]:
    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"n": n, "mean": mean, "ci95": None}
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return {"n": n, "mean": mean, "ci95": [mean - half, mean + half]}


def across_seeds(results: list[dict[str, Any]], model: str, other: str, metric: str) -> dict[str, Any]:
    """Per-seed differences ``model - other`` of ``metric``, their t-interval and a paired t-test
    (``other`` may be ``random_median``: the median over the seed's random models)."""

    def value(r: dict[str, Any], name: str) -> float:
        if name == "random_median":
            return statistics.median(m[metric] for m in r["models"] if m["model"].startswith("random"))
        return next(m[metric] for m in r["models"] if m["model"] == name)

    a = [value(r, model) for r in results]
    b = [value(r, other) for r in results]
    out = t_interval([x - y for x, y in zip(a, b, strict=True)])
    out["per_seed"] = [round(x - y, 5) for x, y in zip(a, b, strict=True)]
    out["ttest_rel_p"] = float(stats.ttest_rel(a, b).pvalue) if len(a) > 1 else None
    return out


def across_seed_task_pairs(results: list[dict[str, Any]], model: str, other: str) -> dict[str, Any]:
    """Task-score differences per (seed, task) pair: more pairs than seeds, not all independent."""
    diffs = []
    for r in results:
        by = {m["model"]: m for m in r["models"]}
        for t in by[model]["task_scores"]:
            mine = by[model]["task_scores"][t]
            if other == "random_median":
                theirs = statistics.median(
                    m["task_scores"][t] for n, m in by.items() if n.startswith("random")
                )
            else:
                theirs = by[other]["task_scores"][t]
            diffs.append(mine - theirs)
    out = t_interval(diffs)
    out["ttest_1samp_p"] = float(stats.ttest_1samp(diffs, 0.0).pvalue) if len(diffs) > 1 else None
    return out


def metric_resampled(metric: str, predictions: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The metric on each bootstrap resample (rows of ``idx``), vectorised for accuracy and the
    Matthews correlation (multi-class form, as sklearn computes it); others by elm-eval, slowly."""
    p, y = predictions[idx], labels[idx]
    if metric == "accuracy":
        return (p == y).mean(axis=1)
    if metric == "matthews_correlation":
        k = int(max(predictions.max(), labels.max())) + 1
        rows = np.arange(idx.shape[0])[:, None]
        confusion = np.bincount((rows * k * k + y * k + p).ravel(), minlength=idx.shape[0] * k * k)
        c = confusion.reshape(idx.shape[0], k, k).astype(float)  # [resample, true, predicted]
        t_k, p_k = c.sum(axis=2), c.sum(axis=1)
        n, correct = c.sum(axis=(1, 2)), np.trace(c, axis1=1, axis2=2)
        cov = correct * n - (t_k * p_k).sum(1)
        denom = np.sqrt(n * n - (p_k * p_k).sum(1)) * np.sqrt(n * n - (t_k * t_k).sum(1))
        return np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)
    return np.array(
        [elm_eval.compute_metric(metric, p[i].tolist(), y[i].tolist())[0] for i in range(len(idx))]
    )


def pooled_bootstrap(
    per_example: list[dict[str, Any]], fitness: str, resamples: int, seed: int = 0
) -> dict[str, Any]:
    """Paired bootstrap over evaluation examples, pooled across seeds.

    One resample draws the validation examples (and, separately, the LM sequences) with
    replacement; when every seed evaluated the same examples (the usual case: the task subsets and
    PTB test documents do not depend on the run seed) the same draw is used for all seeds, so the
    resample keeps the examples' pairing across seeds. On each resample: every model's metric per
    seed and task, the task score (mean over tasks) and the LM loss (scored tokens pooled), then the
    differences found - baseline and found - median(randoms), averaged over seeds. Reported: the
    full-sample difference, the 2.5/97.5 percentiles, and a two-sided bootstrap p (twice the share
    of resamples on the other side of 0). It measures evaluation-set noise for these trained models
    only; the across-seed interval covers training randomness."""
    rng = np.random.default_rng(seed)
    model = f"found_{fitness}"
    out: dict[str, Any] = {}
    # task score
    tasks = list(per_example[0]["tasks"])
    same = all(
        pe["tasks"][t]["digest"] == per_example[0]["tasks"][t]["digest"] for pe in per_example for t in tasks
    )
    idx_by_task = {}
    for t in tasks:
        n = len(per_example[0]["tasks"][t]["labels"])
        idx_by_task[t] = (
            [rng.integers(0, n, (resamples, n))] * len(per_example)
            if same
            else [
                rng.integers(0, len(pe["tasks"][t]["labels"]), (resamples, len(pe["tasks"][t]["labels"])))
                for pe in per_example
            ]
        )
    diffs_task: dict[str, list[np.ndarray]] = {"baseline": [], "random_median": []}
    point_task: dict[str, list[float]] = {"baseline": [], "random_median": []}
    for s, pe in enumerate(per_example):
        score: dict[str, np.ndarray] = {}
        full: dict[str, float] = {}
        for name in pe["tasks"][tasks[0]]["predictions"]:
            per_task, per_task_full = [], []
            for t in tasks:
                d = pe["tasks"][t]
                y, p = np.asarray(d["labels"]), np.asarray(d["predictions"][name])
                per_task.append(metric_resampled(d["metric"], p, y, idx_by_task[t][s]))
                per_task_full.append(float(metric_resampled(d["metric"], p, y, np.arange(len(y))[None])[0]))
            score[name], full[name] = np.mean(per_task, axis=0), statistics.fmean(per_task_full)
        rand = [n for n in score if n.startswith("random")]
        diffs_task["baseline"].append(score[model] - score["baseline"])
        diffs_task["random_median"].append(score[model] - np.median([score[n] for n in rand], axis=0))
        point_task["baseline"].append(full[model] - full["baseline"])
        point_task["random_median"].append(full[model] - statistics.median(full[n] for n in rand))
    # LM loss
    same_lm = all(pe["lm"]["digest"] == per_example[0]["lm"]["digest"] for pe in per_example)
    n_seq = len(next(iter(per_example[0]["lm"]["nll"].values())))
    shared = rng.integers(0, n_seq, (resamples, n_seq))
    diffs_lm: dict[str, list[np.ndarray]] = {"baseline": [], "random_median": []}
    point_lm: dict[str, list[float]] = {"baseline": [], "random_median": []}
    for pe in per_example:
        lm = pe["lm"]
        n = len(next(iter(lm["nll"].values())))
        idx = shared if same_lm and n == n_seq else rng.integers(0, n, (resamples, n))
        loss, full = {}, {}
        for name in lm["nll"]:
            nll, tok = np.asarray(lm["nll"][name]), np.asarray(lm["tokens"][name], dtype=float)
            loss[name] = nll[idx].sum(1) / tok[idx].sum(1)
            full[name] = float(nll.sum() / tok.sum())
        rand = [n for n in loss if n.startswith("random")]
        diffs_lm["baseline"].append(loss[model] - loss["baseline"])
        diffs_lm["random_median"].append(loss[model] - np.median([loss[n] for n in rand], axis=0))
        point_lm["baseline"].append(full[model] - full["baseline"])
        point_lm["random_median"].append(full[model] - statistics.median(full[n] for n in rand))
    for label, diffs, point in (("task_score", diffs_task, point_task), ("lm_loss", diffs_lm, point_lm)):
        for other in ("baseline", "random_median"):
            d = np.mean(diffs[other], axis=0)
            p = 2 * min(float((d <= 0).mean()), float((d >= 0).mean()))
            out[f"{label}_vs_{other}"] = {
                "difference": statistics.fmean(point[other]),
                "ci95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))],
                "p": min(1.0, p),
            }
    out["same_examples_across_seeds"] = {"tasks": same, "lm": same_lm}
    out["resamples"] = resamples
    return out


def mcnemar(per_example: list[dict[str, Any]], fitness: str, other: str = "baseline") -> dict[str, Any]:
    """Exact McNemar test (binomial on the discordant pairs) of per-example correctness, found vs
    ``other``, pooled over seeds and tasks (a test of accuracy, whatever each task's metric)."""
    b = c = 0
    for pe in per_example:
        for d in pe["tasks"].values():
            y = np.asarray(d["labels"])
            mine = np.asarray(d["predictions"][f"found_{fitness}"]) == y
            theirs = np.asarray(d["predictions"][other]) == y
            b += int((mine & ~theirs).sum())
            c += int((~mine & theirs).sum())
    p = float(stats.binomtest(b, b + c, 0.5).pvalue) if b + c else None
    return {"found_right_other_wrong": b, "found_wrong_other_right": c, "p": p}


def summarise(results: list[dict[str, Any]], resamples: int) -> dict[str, Any]:
    per_example = [json.loads(Path(r["per_example_file"]).read_text()) for r in results]
    end_to_end = {}
    for f in FITNESSES:
        model = f"found_{f}"
        end_to_end[f] = {
            "params_per_seed": [
                next(m["params"] for m in r["models"] if m["model"] == model) for r in results
            ],
            **{
                f"{metric}_vs_{other}": across_seeds(results, model, other, metric)
                for metric in ("task_score", "lm_loss")
                for other in ("baseline", "random_median")
            },
            **{
                f"task_score_vs_{other}_seed_task_pairs": across_seed_task_pairs(results, model, other)
                for other in ("baseline", "random_median")
            },
            "bootstrap": pooled_bootstrap(per_example, f, resamples),
            "mcnemar_vs_baseline": mcnemar(per_example, f),
        }
    ranking = {
        f: {
            "tau_task_score_mean": mean_or_none([r["ranking"][f]["tau_task_score"] for r in results]),
            "tau_lm_loss_mean": mean_or_none([r["ranking"][f]["tau_lm_loss"] for r in results]),
            "seconds_per_eval": mean_or_none([r["fitness_seconds_per_eval"][f] for r in results]),
        }
        for f in FITNESSES
    }
    return {"end_to_end": end_to_end, "ranking": ranking}


def mean_or_none(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.fmean(kept), 4) if kept else None


# --- the full run's time, from measured unit costs ---------------------------------------------


def estimate(result: dict[str, Any], args: Any) -> dict[str, float]:
    """Seconds per seed of the full run (FULL sizes, one thread), scaled from ``result``'s unit
    costs: supernet steps, multitask steps (teachers scaled by examples), search evaluations,
    retraining steps, fine-tuning examples, evaluation examples and LM documents per model."""
    u = result["unit_seconds"]
    tasks = len(args.tasks)
    models = FULL["randoms"] + 1 + len(FITNESSES)  # at most; found models often coincide
    supernet_steps = 600  # the demo's supernet budget (3 epochs x 200)
    evaluations = FULL["generations"] * FULL["population"]
    multitask_steps = FULL["multitask_epochs"] * tasks * int(FULL["train_examples"] * 0.8 // 16)
    # the multitask stage = the task teachers' fine-tuning (scaled by training examples: an upper
    # bound, it scales the loading too) + its own steps (costed like supernet steps)
    smoke_steps = (u["multitask_steps"] or 0) * u["supernet_per_step"]
    teachers = max(0.0, u["multitask_stage"] - smoke_steps) * FULL["train_examples"] / args.train_examples
    full = {
        "supernet": u["supernet_per_step"] * supernet_steps,
        "multitask (teachers: upper bound)": teachers + multitask_steps * u["supernet_per_step"],
        "searches": sum((v or 0) * evaluations for v in u["fitness_per_eval"].values()),
        "retrain": u["retrain_per_step"] * FULL["retrain_steps"] * models,
        "task fine-tune": models
        * tasks
        * (
            u["finetune_per_train_example_epoch"] * FULL["train_examples"] * 2
            + u["predict_per_example"] * FULL["eval_examples"] * 3
        ),
        "LM loss": (models + 1) * u["lm_per_document"] * FULL["lm_documents"],
    }
    full = {k: round(v) for k, v in full.items()}
    full["total"] = sum(full.values())
    return full


# --- output -----------------------------------------------------------------------------------


def fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, list):
        return "[" + ", ".join(fmt(v, digits) for v in x) + "]"
    if isinstance(x, float):
        return f"{x:+.{digits}f}" if digits else f"{x:.3g}"
    return str(x)


def markdown(result: dict[str, Any], args: Any) -> str:
    s = result["summary"]
    seeds = result["results"]
    lines = [
        f"Space: the demo space stacked to {args.layers} layers ({seeds[0]['space_size']:,} architectures, budget "
        f"{seeds[0]['param_budget']:,} parameters); tasks {', '.join(args.tasks)}; evaluation sizes "
        f"{seeds[0]['eval_sizes']}; retraining {args.retrain_steps} steps per model; primary fitness "
        f"`{args.primary}`; {args.randoms} random architectures at 90-100% of the primary found model's "
        "parameters. Task score: mean over tasks of each task's metric (higher is better); LM loss: "
        "masked-LM loss on PTB test (lower is better).",
        "",
        "## A. Found minus baseline and minus the median of the randoms",
        "",
        "Statistics. *Across seeds*: one difference per seed (each a full repetition of the pipeline), "
        "mean with a Student-t 95% interval and `scipy.stats.ttest_rel` over the seeds (3 seeds: little power, "
        "but it covers training randomness). *Seed x task pairs*: the task-score difference per seed and "
        "task, t-interval and one-sample t-test (more pairs; the tasks of one seed share a model, so not "
        "independent). *Pooled bootstrap*: a paired bootstrap over the evaluation examples "
        f"({result['summary']['end_to_end'][args.primary]['bootstrap']['resamples']} resamples; the same "
        "examples drawn for every seed and model, since all seeds evaluate the same examples), averaging the "
        "per-seed differences; percentile interval and two-sided bootstrap p; it measures evaluation noise "
        "for these trained models, not training randomness. *McNemar*: exact test on the per-example "
        "correctness, found vs baseline, pooled over seeds and tasks (a test of accuracy whatever the task's "
        "metric; the examples repeat across seeds, so treat its p as indicative).",
        "",
        "| found by | vs | metric | per seed | mean | t 95% CI | ttest_rel p | bootstrap diff | bootstrap 95% CI | bootstrap p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in [args.primary, *[x for x in FITNESSES if x != args.primary]]:
        e = s["end_to_end"][f]
        for metric in ("task_score", "lm_loss"):
            for other in ("baseline", "random_median"):
                a = e[f"{metric}_vs_{other}"]
                b = e["bootstrap"][f"{metric}_vs_{other}"]
                lines.append(
                    f"| {f} | {other} | {metric} | {fmt(a['per_seed'])} | {fmt(a['mean'])} | {fmt(a['ci95'])} | "
                    f"{fmt(a['ttest_rel_p'], 0)} | {fmt(b['difference'])} | {fmt(b['ci95'])} | {fmt(b['p'], 0)} |"
                )
    lines += ["", "Seed x task pairs (task score) and McNemar (found vs baseline, pooled):", ""]
    lines += [
        "| found by | vs | pairs | mean | t 95% CI | p | McNemar found-only / baseline-only right | McNemar p |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for f in FITNESSES:
        e = s["end_to_end"][f]
        mc = e["mcnemar_vs_baseline"]
        for other in ("baseline", "random_median"):
            a = e[f"task_score_vs_{other}_seed_task_pairs"]
            mcn = (
                f"{mc['found_right_other_wrong']} / {mc['found_wrong_other_right']} | {fmt(mc['p'], 0)}"
                if other == "baseline"
                else "- | -"
            )
            lines.append(
                f"| {f} | {other} | {a['n']} | {fmt(a['mean'])} | {fmt(a['ci95'])} | {fmt(a['ttest_1samp_p'], 0)} | {mcn} |"
            )
    lines += ["", "## Per seed: every model", ""]
    for r in seeds:
        lines += [
            f"Seed {r['seed']} (primary found model {r['found_params']:,} parameters; baseline within budget: "
            f"{r['baseline_within_budget']}):",
            "",
            _common.table(
                r["models"], ["model", "architecture", "params", "task_score", "lm_loss", "kd_loss"]
            ),
            "",
        ]
    lines += [
        "## B. Ranking fidelity of each fitness",
        "",
        "Kendall tau-b (`scipy.stats.kendalltau`) between each fitness (oriented so that higher predicts "
        "better) and the stand-alone task score / the stand-alone LM loss (oriented: lower loss = better) "
        "over the distinct retrained models of a seed; seconds per architecture: one fitness evaluation, "
        "measured during the searches.",
        "",
        "| fitness | "
        + " | ".join(f"tau task s{r['seed']}" for r in seeds)
        + " | mean tau task | "
        + " | ".join(f"tau LM s{r['seed']}" for r in seeds)
        + " | mean tau LM | s per eval |",
        "|---|" + "---|" * (2 * len(seeds) + 3),
    ]
    for f in FITNESSES:
        rk = s["ranking"][f]
        lines.append(
            f"| {f} | "
            + " | ".join(fmt(r["ranking"][f]["tau_task_score"], 0) for r in seeds)
            + f" | {fmt(rk['tau_task_score_mean'], 0)} | "
            + " | ".join(fmt(r["ranking"][f]["tau_lm_loss"], 0) for r in seeds)
            + f" | {fmt(rk['tau_lm_loss_mean'], 0)} | {fmt(rk['seconds_per_eval'], 0)} |"
        )
    lines += ["", f"Ranking set sizes: {[r['ranking']['kd']['n'] for r in seeds]}.", ""]
    lines += ["Seconds per phase: " + "; ".join(f"seed {r['seed']}: {r['seconds']}" for r in seeds)]
    if result.get("estimate_full_seconds_per_seed"):
        lines += [
            "",
            f"Full-run estimate per seed from these unit costs (s): {result['estimate_full_seconds_per_seed']}",
        ]
    if result.get("skipped_tasks"):
        lines += ["", f"Tasks skipped (not in this elm-eval): {result['skipped_tasks']}"]
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def worker_command(args: Any, seed: int, out: Path) -> list[str]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--threads",
        str(args.threads),
        "--seeds",
        str(seed),
    ]
    cmd += ["--jobs", "1", "--worker-out", str(out), "--tasks", *args.tasks, "--primary", args.primary]
    for key in FULL:
        value = getattr(args, key)
        if value is not None:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    return [*cmd, "--smoke"] if args.smoke else cmd


def run_seeds(args: Any) -> list[dict[str, Any]]:
    """The seeds in this process (``--jobs 1``), or in ``--jobs`` worker processes: per seed one
    ``prepare`` job (stages, searches) and ``--jobs`` evaluation jobs (shares of the models), queued
    so that every job's prepare job was started before it (a job waits for its prepare job to end);
    then this process collects each seed from the caches and adds the workers' seconds."""
    if args.jobs <= 1:
        return [run_seed(args, seed) for seed in args.seeds]
    workers = _common.WORK / "decisive-workers"
    workers.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    prepared = {seed: threading.Event() for seed in args.seeds}
    jobs = [(seed, "prepare") for seed in args.seeds]
    jobs += [(seed, f"eval:{k}/{args.jobs}") for seed in args.seeds for k in range(args.jobs)]

    def one(job: tuple[int, str]) -> dict[str, Any]:
        seed, part = job
        if part != "prepare":
            prepared[seed].wait()
        out = (
            workers
            / f"{'smoke-' if args.smoke else ''}{seed}-{part.replace(':', '').replace('/', 'of')}.json"
        )
        out.unlink(missing_ok=True)
        try:
            subprocess.run([*worker_command(args, seed, out), "--worker-part", part], check=True, env=env)
        finally:
            if part == "prepare":
                prepared[seed].set()
        return json.loads(out.read_text())

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        parts = list(pool.map(one, jobs))
    results = []
    for seed in args.seeds:
        result = run_seed(args, seed)
        seconds: dict[str, float] = {}
        for p in parts:
            if p["seed"] == seed:
                for phase, value in p["seconds"].items():
                    seconds[phase] = round(seconds.get(phase, 0.0) + value, 2)
        result["collect_seconds"], result["seconds"] = result["seconds"], seconds
        result["worker_seconds"] = {p["part"]: p["seconds"] for p in parts if p["seed"] == seed}
        result["unit_seconds"] = units(result["unit_inputs"], seconds)
        results.append(result)
    return results


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME)
    p.set_defaults(seeds=[42, 43, 44])
    p.add_argument("--jobs", type=int, default=1, help="seeds run in parallel (worker processes)")
    p.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, help="elm-eval task names")
    p.add_argument(
        "--primary",
        choices=FITNESSES,
        default="task",
        help="the fitness whose found model is 'found' (the demo and paper presets search by task score)",
    )
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP, help="bootstrap resamples")
    p.add_argument("--worker-out", type=Path, default=None, help=argparse_suppress())
    p.add_argument("--worker-part", default="all", help=argparse_suppress())
    for key, value in FULL.items():
        p.add_argument(
            f"--{key.replace('_', '-')}",
            type=int,
            default=None,
            help=f"default {value} ({'smoke: ' + str(SMOKE_SIZES.get(key, value))})",
        )
    args = p.parse_args()
    for key, value in FULL.items():
        if getattr(args, key) is None:
            setattr(args, key, SMOKE_SIZES.get(key, value) if args.smoke else value)
    known = set(elm_eval.BUILTIN_TASKS)
    missing = [t for t in args.tasks if t.lower().replace("_", "-") not in known]
    skipped = []
    if missing:
        if not args.smoke:
            p.error(f"tasks {missing} are not in this elm-eval (known: {sorted(known)}); pass --tasks")
        print(f"WARNING: smoke run without the tasks {missing} (not in this elm-eval yet)", flush=True)
        args.tasks, skipped = [t for t in args.tasks if t not in missing], missing
    info = _common.machine(args.threads)
    if args.worker_out is not None:  # one seed for a parent process
        result = run_seed(args, args.seeds[0], args.worker_part)
        elm_train.write_json_atomic(args.worker_out, result)
        return
    start = time.perf_counter()
    results = run_seeds(args)
    wall = round(time.perf_counter() - start, 1)
    summary = summarise(results, args.bootstrap)
    result = {
        **_common.provenance(NAME, args, info),
        "seeds": args.seeds,
        "settings": {k: getattr(args, k) for k in FULL}
        | {"tasks": args.tasks, "primary": args.primary, "jobs": args.jobs},
        "skipped_tasks": skipped,
        "wall_seconds": wall,
        "summary": summary,
        "results": results,
    }
    if args.smoke:
        coldest = max(results, key=lambda r: r["seconds"].get("supernet", 0.0))  # not read from a cache
        result["estimate_full_seconds_per_seed"] = estimate(coldest, args)
    _common.write(_common.output_path(args, NAME), result, markdown(result, args))


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
