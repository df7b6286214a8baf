"""How much the report's task comparisons would move: the noise the single numbers hide.

Two sources, measured separately (the report says which is which):

- the evaluation examples: a paired bootstrap over each task's validation examples
  (:func:`elm_eval.paired_bootstrap`, the tasks stage's per-example predictions), for found vs
  baseline and found vs teacher, per task and for the mean over tasks;
- fine-tuning: with ``tasks.seeds`` > 1 each student is fine-tuned with several seeds; each model's
  mean and spread per task, and the found-minus-baseline difference of the mean task score per
  seed with a Student-t interval and a paired t-test (``scipy.stats``) over the seeds.

Neither covers the randomness of supernet training, search and retraining (repeat the run with
another ``seed`` for that; ``benchmarks/bench_ablations.py`` does).
"""

from __future__ import annotations

import json
import math
import statistics
from typing import TYPE_CHECKING, Any

from scipy import stats

import elm_eval
from elm_eval import BootstrapDifference
from elm_train.pipeline.stages import retrain
from elm_train.pipeline.stages.tasks import seed_name

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run

RESAMPLES = 2000
CONFIDENCE = 0.95


def _predictions(run: Run, task: str, who: str) -> dict[str, Any] | None:
    path = run.layout.task_predictions(task, who)
    return json.loads(path.read_text()) if path.is_file() else None


def _summary(d: BootstrapDifference) -> dict[str, Any]:
    return d.model_dump(mode="json")


def bootstrap(run: Run, other: str) -> dict[str, Any] | None:
    """Found minus ``other`` per task and for the mean over tasks (the first seed's models); None
    when a task lacks either model's predictions (a run from before they were written)."""
    per_task: dict[str, BootstrapDifference] = {}
    for i, task in enumerate(bootstrapped_tasks(run)):
        mine, theirs = _predictions(run, task, "found"), _predictions(run, task, other)
        if mine is None or theirs is None or mine["labels"] != theirs["labels"]:
            return None
        per_task[task] = elm_eval.paired_bootstrap(
            mine["metric"],
            mine["labels"],
            mine["predictions"],
            theirs["predictions"],
            resamples=RESAMPLES,
            confidence=CONFIDENCE,
            seed=run.config.seed + i,  # independent draws per task (mean_over_tasks assumes them)
        )
    if not per_task:
        return None
    mean = elm_eval.mean_over_tasks(list(per_task.values()))
    return {"tasks": {t: _summary(d) for t, d in per_task.items()}, "mean": _summary(mean)}


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean, sample standard deviation and Student-t interval of ``values`` (None below 2)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return {"n": n, "mean": mean, "std": None, "ci": None}
    std = statistics.stdev(values)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci": [mean - half, mean + half]}


def seed_spread(run: Run) -> dict[str, Any] | None:
    """Per student and task: the score of every fine-tuning seed, its mean and spread; and found
    minus baseline of the mean task score per seed (t-interval, ``ttest_rel``). None with one seed."""
    seeds = run.config.tasks.seeds
    if seeds < 2:
        return None
    scores: dict[str, dict[str, list[float]]] = {}
    for student in retrain.students(run):
        scores[student] = {}
        for task in bootstrapped_tasks(run):
            found = [_predictions(run, task, seed_name(student, k)) for k in range(seeds)]
            if any(f is None for f in found):
                return None
            scores[student][task] = [f["score"] for f in found if f is not None]
    out: dict[str, Any] = {
        "seeds": [run.config.seed + k for k in range(seeds)],
        "scores": {
            s: {t: {"per_seed": v, **t_interval(v)} for t, v in by_task.items()}
            for s, by_task in scores.items()
        },
    }
    if "found" in scores and "baseline" in scores:
        tasks = bootstrapped_tasks(run)
        found = [statistics.fmean(scores["found"][t][k] for t in tasks) for k in range(seeds)]
        base = [statistics.fmean(scores["baseline"][t][k] for t in tasks) for k in range(seeds)]
        diff = [a - b for a, b in zip(found, base, strict=True)]
        p = float(stats.ttest_rel(found, base).pvalue)
        out["found_minus_baseline"] = {
            "per_seed": diff,
            **t_interval(diff),
            "ttest_rel_p": None if math.isnan(p) else p,
        }
    return out


def bootstrapped_tasks(run: Run) -> list[str]:
    """The tasks whose per-example validation predictions the tasks stage records: every task but
    extractive QA (SQuAD's models are selected and reported by EM/F1 alone)."""
    return [t for t in run.config.task_names if not elm_eval.is_qa_task(t)]


def task_uncertainty(run: Run) -> dict[str, Any] | None:
    """Everything the report's uncertainty section shows (None when the run scored no tasks)."""
    tasks, students = bootstrapped_tasks(run), retrain.students(run)
    if not tasks or "found" not in students:
        return None
    out: dict[str, Any] = {"confidence": CONFIDENCE, "resamples": RESAMPLES}
    left_out = [t for t in run.config.task_names if t not in tasks]
    if left_out:
        out["left_out"] = left_out
    if "baseline" in students:
        out["found_vs_baseline"] = bootstrap(run, "baseline")
    out["found_vs_teacher"] = bootstrap(run, "teacher")
    out["fine_tuning_seeds"] = seed_spread(run)
    out["verdict"] = verdict(out)
    return out


def _interval(low: float, high: float) -> str:
    return f"[{low:+.4f}, {high:+.4f}]"


def verdict(info: dict[str, Any]) -> str | None:
    """One sentence: is found minus baseline (mean task score) inside the noise?"""
    boot = info.get("found_vs_baseline")
    if not boot:
        return None
    m = boot["mean"]
    examples = f"the {m['examples']:,} validation examples"
    where = f"95% paired bootstrap interval over {examples} {_interval(m['low'], m['high'])}"
    boot_zero = m["low"] <= 0 <= m["high"]
    seeds = (info.get("fine_tuning_seeds") or {}).get("found_minus_baseline")
    head = f"Found minus baseline, mean task score: {m['difference']:+.4f}"
    if not seeds or seeds["ci"] is None:
        if boot_zero:
            return (
                f"{head}, inside the noise: the {where} includes 0 (one fine-tuning seed per model, so "
                "fine-tuning noise, not measured here, comes on top; set tasks.seeds to measure it)."
            )
        return (
            f"{head}, outside the noise of the evaluation examples (the {where} excludes 0), but with one "
            "fine-tuning seed per model the fine-tuning noise is not measured (set tasks.seeds), so this "
            "is not yet a verdict on the two architectures."
        )
    seed_zero = seeds["ci"][0] <= 0 <= seeds["ci"][1]
    over = (
        f"over {seeds['n']} fine-tuning seeds {seeds['mean']:+.4f}, t 95% interval {_interval(*seeds['ci'])}"
    )
    if boot_zero or seed_zero:
        which = " and ".join(
            x
            for x, zero in (("the seeds' interval", seed_zero), ("the bootstrap interval", boot_zero))
            if zero
        )
        return f"{head} ({over}; {where}), inside the noise: {which} include{'s' if ' and ' not in which else ''} 0."
    return f"{head} ({over}; {where}), outside the noise: both intervals exclude 0."


def uncertainty_section(info: dict[str, Any] | None) -> list[str]:
    """The report's Markdown section (empty without task results)."""
    if not info:
        return []
    lines = ["## How sure are these task comparisons?", ""]
    if info.get("verdict"):
        lines += [f"**{info['verdict']}**", ""]
    rows = []
    for label, key in (("found - baseline", "found_vs_baseline"), ("found - teacher", "found_vs_teacher")):
        boot = info.get(key)
        if not boot:
            continue
        for task, d in [*boot["tasks"].items(), ("mean over tasks", boot["mean"])]:
            rows.append(
                f"| {label} | {task} | {d['metric']} | {d['difference']:+.4f} | {_interval(d['low'], d['high'])} "
                f"| {d['p_value']:.3g} |"
            )
    if rows:
        lines += [
            f"Paired bootstrap over each task's validation examples ({info['resamples']} resamples, percentile "
            "interval; the first fine-tuning seed's models). It measures evaluation-set noise for these "
            "models as trained; each student's score is its best validation checkpoint, picked on the same "
            "examples, which biases both scores upwards alike.",
            "",
            "| comparison | task | metric | difference | 95% interval | bootstrap p |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
        if info.get("left_out"):
            lines += [
                f"Not in the bootstrap: {', '.join(info['left_out'])} (extractive QA; the tasks stage records "
                "EM and F1, not per-question predictions).",
                "",
            ]
    seeds = info.get("fine_tuning_seeds")
    if seeds:
        lines += [
            f"Fine-tuning seeds {seeds['seeds']} (each student fine-tuned once per seed; the teacher once):",
            "",
            "| model | task | scores per seed | mean | std | t 95% interval |",
            "|---|---|---|---|---|---|",
        ]
        for model, by_task in seeds["scores"].items():
            for task, s in by_task.items():
                per = ", ".join(f"{v:.4f}" for v in s["per_seed"])
                lines.append(
                    f"| {model} | {task} | {per} | {s['mean']:.4f} | {s['std']:.4f} | {_interval(*s['ci'])} |"
                )
        diff = seeds.get("found_minus_baseline")
        if diff:
            p = diff["ttest_rel_p"]
            lines += [
                "",
                f"Found minus baseline, mean task score per seed: {', '.join(f'{v:+.4f}' for v in diff['per_seed'])}; "
                f"mean {diff['mean']:+.4f}, t 95% interval {_interval(*diff['ci'])}, paired t-test p "
                f"{'-' if p is None else f'{p:.3g}'}.",
            ]
        lines.append("")
    else:
        lines += [
            "One fine-tuning seed per student (`tasks.seeds: 1`): fine-tuning noise is not measured.",
            "",
        ]
    return lines
