"""Report: the run report: JSON for machines, Markdown for people, PNG plots for both.

The comparison table and the score-against-size plots are elm-eval's (the same report a user
gets from ``elm-eval report``); this stage adds what only the pipeline knows: the supernet's
loss and growth, the search's progress, the head choice, and how the found model was made.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import elm_eval
from elm_eval.plots import plot_loss_curves
from elm_train import deployment, plots
from elm_train.models.model_card import Score
from elm_train.pipeline.cards import write_student_card
from elm_train.pipeline.sizing import PlanContext, StagePlan
from elm_train.pipeline.stage import Stage
from elm_train.pipeline.stages import retrain
from elm_train.pipeline.uncertainty import task_uncertainty, uncertainty_section
from elm_train.runtime.checkpoint import write_json_atomic
from elm_train.training.supernet_training import WIDTHS_FILE

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run

FITNESS_LABELS = {
    "distill_loss": "held-out distillation loss",
    "wpca": "W-PCA proxy",
    "params": "fitness = parameter count",
    "task_score": "mean held-out task score",
}
"""How the report names the built-in fitnesses' values; a registered one is named as it names itself."""


def _curves(run: Run) -> dict[str, list[float]]:
    """Training-loss curves per training loop, from the metrics log (last value per step, so a
    resumed run's replayed steps are not drawn twice)."""
    curves: dict[str, dict[int, float]] = {}
    for row in run.metrics.read():
        if "loss" in row and "step" in row and row.get("event") is None:
            curves.setdefault(row["stage"], {})[row["step"]] = row["loss"]
    return {stage: [v for _, v in sorted(points.items())] for stage, points in curves.items()}


def execute(run: Run) -> dict[str, Any]:
    out = run.layout.report_dir
    stages = {s.name: run.done_info(s.name) for s in run.stages if s.name != "report" and run.is_done(s.name)}
    results = [elm_eval.load_result(p) for p in sorted(run.layout.results.glob("*.json"))]
    if run.is_done("retrain"):
        complete_model_cards(run, results)
    files: dict[str, str] = {}
    if results:
        report = elm_eval.write_report(results, out / "comparison")
        files.update({k: str(v) for k, v in report.model_dump().items() if v is not None})
    curves = _curves(run)
    pretrain = {k: v for k, v in curves.items() if not k.startswith("tasks.")}
    if pretrain:
        files["loss_curves"] = str(plot_loss_curves(pretrain, out / "loss_curves.png"))
    if run.is_done("supernet"):
        widths = json.loads((run.layout.supernet_final / WIDTHS_FILE).read_text())
        files["width_growth"] = str(
            plots.width_growth(widths["history"], widths["kinds"], out / "width_growth.png")
        )
    for name, source in run.layout.search_plots.items():
        if source.is_file():
            shutil.copyfile(source, out / f"search_{name}.png")
            files[f"search_{name}"] = str(out / f"search_{name}.png")
    summary_md = out / "comparison" / "summary.md"
    comparison = summary_md.read_text() if summary_md.is_file() else ""
    uncertainty = task_uncertainty(run) if run.is_done("tasks") else None
    payload = {"name": run.config.name, "stages": stages, "files": files, "uncertainty": uncertainty}
    write_json_atomic(run.layout.report_json, payload)
    run.layout.report_markdown.write_text(markdown(run, stages, comparison, files, uncertainty))
    return {"report": str(run.layout.report_markdown), "files": files}


def corpus_name(cfg: Any) -> str:
    """The corpus as the report names it: its hub id (and config) for a hub corpus; each source's
    name, joined by `` + ``, for several."""
    return str(cfg.data.corpus_name)


def complete_model_cards(run: Run, results: list[Any]) -> None:
    """Rewrite each student's model card with what the run measured of it."""
    for name, student in retrain.students(run).items():
        scores = [
            Score(name=f"{r.task} ({r.metric})", value=r.score, metric=r.metric, task=r.task)
            for r in results
            if r.kind == "task" and r.model == name
        ]
        scores += [
            Score(name="perplexity", value=r.perplexity, metric="perplexity", dataset=corpus_name(run.config))
            for r in results
            if r.kind == "lm" and r.model == name
        ]
        latency = next(
            (r.entries[0].stats.median_ms for r in results if r.kind == "latency" and r.model == name), None
        )
        training = json.loads((run.layout.student_dir(name) / "result.json").read_text())
        write_student_card(
            run,
            student["model_dir"],
            name,
            student["architecture"],
            training,
            scores,
            latency,
            deployment=deployment_lines(run, name),
        )


def markdown(
    run: Run,
    stages: dict[str, Any],
    comparison: str,
    files: dict[str, str],
    uncertainty: dict[str, Any] | None = None,
) -> str:
    lines = [f"# ELM run report: {run.config.name}", ""]
    cfg = run.config
    teacher = cfg.teacher.name_or_path or "stand-in GPT-2 trained here"
    lines += [
        f"- teacher: `{teacher}`; tokenizer: `{cfg.tokenizer_source}`; "
        f"corpus: `{corpus_name(cfg)}` in blocks of {cfg.data.block_size} tokens",
        f"- search space: `{cfg.space if isinstance(cfg.space, str) else cfg.space.name}`; seed {cfg.seed}; "
        f"hidden loss: {cfg.supernet.kd.hidden_loss}; DeepSpeed ZeRO-{cfg.deepspeed.zero_stage}, {cfg.deepspeed.precision}",
        "",
    ]
    if cfg.hub_mirrors:
        copies = "; ".join(f"`{hub_id}` from `{path}`" for hub_id, path in cfg.hub_mirrors.items())
        lines[-1:-1] = [f"- hub ids read from local copies, not from the hub: {copies}"]
    figures = stages.get("data", {}).get("figures")
    if figures:  # absent when the blocks were built by an earlier version
        lines[-1:-1] = [
            f"- data stage: {figures['documents']:,} documents ({figures['text_mb']:,.1f} MB), "
            f"{figures['tokens']:,} tokens, {figures['blocks']:,} blocks in {figures['seconds']:,.1f} s "
            f"({figures['processes']} processes); peak memory {figures['peak_rss_mb']:,.0f} MB "
            f"(largest worker {figures['peak_child_rss_mb']:,.0f} MB)"
        ]
    if "teacher" in stages:
        lines += teacher_section(stages["teacher"])
    if "supernet" in stages:
        s = stages["supernet"]
        what = "distillation + LM loss" if run.causal else "distillation loss"
        lines += [
            "## Supernet",
            "",
            f"{s['steps']} steps, final {what} {s['final_loss']:.4f}; "
            f"{s['grown_pairs']} (layer, candidate) FFNs grew; mean sampled size {s['space_mean_params']:,.0f} parameters.",
            "",
        ]
    if stages.get("multitask"):  # empty when the stage did not apply
        s = stages["multitask"]
        held = ", ".join(f"{t} {v['train']:,}/{v['heldout']:,}" for t, v in s["tasks"].items())
        lines += [
            "## Multitask fine-tuning",
            "",
            f"{s['steps']} steps, final loss {s['final_loss']:.4f}; training/held-out examples: {held}.",
            "",
        ]
    if "search" in stages:
        s = stages["search"]
        lines += [
            "## Search",
            "",
            f"Best of {s['evaluations']} evaluated paths: `{s['architecture']}` "
            f"({s['params']:,} parameters, {FITNESS_LABELS.get(s['fitness'], s['fitness'])} {s[s['fitness']]:.6g}).",
            "",
        ]
    if "heads" in stages:
        s = stages["heads"]
        lines += ["## Heads (CKA)", "", f"`{s['before']}` -> `{s['after']}`", ""]
    if "retrain" in stages:
        lines += [
            "## Retrained students" if cfg.retrain.enabled else "## Students (not retrained)",
            "",
            f"Route: {cfg.retrain.route()}.",
            "",
            "| student | architecture | parameters | final loss |",
            "|---|---|---|---|",
        ]
        for name, s in stages["retrain"].items():
            loss = s.get("final_loss")
            arch = s["architecture"].replace("|", "\\|")  # a table cell cannot hold a bare pipe
            shown = f"{loss:.4f}" if loss is not None else "(trained earlier)"
            if s.get("steps") == 0:
                shown = "not retrained"
            lines.append(f"| {name} | `{arch}` | {s['params']:,} | {shown} |")
        lines.append("")
        if stages["retrain"].get("baseline", {}).get("within_budget") is False:
            lines += [
                "No all-BERT path of one width fits in the found model's size, so the baseline is the "
                "smallest one, larger than the found model.",
                "",
            ]
    perplexities = {
        key.removesuffix(".perplexity"): value
        for key, value in stages.get("evaluate", {}).items()
        if key.endswith(".perplexity")
    }
    if perplexities:
        lines += perplexity_section(run, perplexities, stages)
    lines += deployment_section(stages.get("evaluate", {}))
    if comparison:
        lines += ["## Comparison (elm-eval)", "", comparison.split("\n", 2)[-1].strip(), ""]
    lines += uncertainty_section(uncertainty)
    if files:
        lines += ["## Files", ""] + [
            f"- {k}: `{Path(v).relative_to(run.dir) if Path(v).is_relative_to(run.dir) else v}`"
            for k, v in files.items()
        ]
    return "\n".join(lines) + "\n"


def teacher_section(info: dict[str, Any]) -> list[str]:
    lines = [
        "## Teacher",
        "",
        f"`{info['model_type']}`, {info['layers']} layers x {info['hidden']}, "
        f"{info['parameters']:,} parameters, vocabulary {info['vocab_size']:,}.",
    ]
    if info.get("stand_in"):
        training = info.get("training", {})
        loss = training.get("final_loss")
        shown = f", final LM loss {loss:.4f}" if loss is not None else ""
        lines += [
            "",
            f"**Stand-in teacher:** {info['note']}. Trained for {training.get('steps')} steps{shown}.",
        ]
    return [*lines, ""]


def perplexity_section(run: Run, perplexities: dict[str, float], stages: dict[str, Any]) -> list[str]:
    """The held-out perplexities side by side (the causal family's main result)."""
    cfg = run.config
    split = "test" if all(source.kind == "ptb" for _, source in cfg.data.mix()) else "held-out"
    protocol = (
        f"sliding window of {cfg.data.block_size} tokens, stride {cfg.data.block_size // 2}"
        if run.causal
        else "masked-LM (15% of tokens)"
    )
    lines = [
        f"## Perplexity ({corpus_name(cfg)} {split} text, {protocol})",
        "",
        "| model | parameters | perplexity |",
        "|---|---|---|",
    ]
    retrained = stages.get("retrain", {})
    order = ["teacher", *retrain.students(run)]  # done.json sorts its keys; keep the natural order
    for name, value in sorted(
        perplexities.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)
    ):
        if name == "teacher":
            params = stages.get("teacher", {}).get("parameters")
            label = "teacher (stand-in)" if stages.get("teacher", {}).get("stand_in") else "teacher"
        else:
            params, label = retrained.get(name, {}).get("params"), name
        lines.append(f"| {label} | {f'{params:,}' if params else '-'} | {value:.2f} |")
    return [*lines, ""]


def deployment_section(evaluate: dict[str, Any]) -> list[str]:
    """Each student's three runtimes side by side (the evaluate stage's ``deployment``), if measured."""
    lines: list[str] = []
    for name, summary in evaluate.get("deployment", {}).items():
        lines += [f"## Deployment: {name} ({deployment.describe(summary)})", ""]
        lines += [*deployment.markdown_rows(summary, evaluate.get(f"{name}.perplexity")), ""]
        tasks = deployment.task_rows(summary)
        lines += [*tasks, ""] if tasks else []
    return lines


def deployment_lines(run: Run, name: str) -> list[str]:
    """The model card's deployment section: the files (relative to the model) and the figures."""
    done = run.done_info("evaluate") if run.is_done("evaluate") else {}
    summary = done.get("deployment", {}).get(name)
    if not summary:
        return []
    files = [
        f"- {kind}: `{os.path.relpath(path, run.dir)}` in the run directory (`{Path(path).name}`)"
        for kind, path in summary["files"].items()
    ]
    figures = deployment.markdown_rows(summary, done.get(f"{name}.perplexity"))
    tasks = deployment.task_rows(summary)
    return [
        *files,
        "",
        f"Measured with {deployment.describe(summary)}:",
        "",
        *figures,
        *(["", *tasks] if tasks else []),
    ]


def estimate(ctx: PlanContext, plan: StagePlan) -> None:
    """Reads what the other stages wrote; trains and scores nothing."""


STAGE = Stage(
    "report",
    "JSON, Markdown and PNG report",
    execute,
    reads=("retrain",),
    writes=("report_json", "report_markdown", "report_dir"),
    ranks="rank0",
    estimate=estimate,
)
