"""Write evaluation results as JSON and Markdown, and combine many results into a report with plots.

A run writes one JSON (the pydantic result, re-readable) and one Markdown table per result. A
report groups results by model name into one row per model and draws score against parameters
and against latency with the Pareto front marked, plus the fine-tuning loss curves.

The score of a model is the mean of its task scores; a model with only language-model results is
placed by perplexity instead (``exp`` of its mean loss over corpora), where lower is better. The
parameter count comes from a latency result when there is one (the measured network) and
otherwise from a task result (which includes the classification head).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from elm_eval.errors import ElmEvalError, describe_validation_error
from elm_eval.files import make_output_dir, read_text, write_file
from elm_eval.plots import pareto_front, plot_loss_curves, plot_pareto
from elm_eval.results import AnyResult, LatencyResult, LMResult, TaskResult

Result = LMResult | TaskResult | LatencyResult
_ADAPTER: TypeAdapter[Result] = TypeAdapter(AnyResult)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _fmt(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def result_markdown(result: Result) -> str:
    """A Markdown heading and table for one result."""
    if isinstance(result, LMResult):
        return f"## {result.objective} perplexity: {result.model}\n\n" + _table(
            ["model", "objective", "loss (nats/token)", "perplexity", "scored tokens", "sequences"],
            [
                [
                    result.model,
                    result.objective,
                    _fmt(result.loss),
                    _fmt(result.perplexity, 3),
                    _fmt(result.num_scored_tokens),
                    _fmt(result.num_sequences),
                ]
            ],
        )
    if isinstance(result, TaskResult):
        values = ", ".join(f"{key} {_fmt(value)}" for key, value in result.validation_metrics.items())
        test = ", ".join(f"{key} {_fmt(value)}" for key, value in (result.test_metrics or {}).items()) or "-"
        return f"## task {result.task}: {result.model}\n\n" + _table(
            ["model", "task", "metric", "score", "validation", "test", "params", "train / validation"],
            [
                [
                    result.model,
                    result.task,
                    result.metric,
                    _fmt(result.score),
                    values,
                    test,
                    _fmt(result.num_parameters),
                    f"{result.num_train_examples} / {result.num_validation_examples}",
                ]
            ],
        )
    rows = [
        [
            str(entry.batch_size),
            str(entry.seq_length),
            _fmt(entry.stats.median_ms, 3),
            _fmt(entry.stats.mean_ms, 3),
            _fmt(entry.stats.std_ms, 3),
            _fmt(entry.peak_memory_bytes),
        ]
        for entry in result.entries
    ]
    return (
        f"## latency: {result.model}\n\n"
        f"{result.runtime} on device {result.device}, {result.num_threads} threads, "
        f"{result.num_parameters:,} parameters "
        f"({result.parameter_bytes:,} bytes); peak memory: {result.peak_memory_method}\n\n"
        + _table(["batch", "seq", "median ms", "mean ms", "std ms", "peak memory bytes"], rows)
    )


def result_stem(result: Result) -> str:
    """A file name stem that keeps results of different kinds, tasks and models apart."""
    detail = {"lm": getattr(result, "objective", ""), "task": getattr(result, "task", "")}.get(
        result.kind, ""
    )
    return _slug("-".join(part for part in (result.kind, detail, result.model) if part))


def write_result(result: Result, out_dir: str | Path, stem: str | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out_dir``; return both paths."""
    out = make_output_dir(Path(out_dir))
    stem = stem or result_stem(result)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    write_file(json_path, result.model_dump_json(indent=2) + "\n")
    write_file(md_path, result_markdown(result))
    return json_path, md_path


def load_result(path: str | Path) -> Result:
    """Read a result JSON written by :func:`write_result` (any kind)."""
    path = Path(path)
    text = read_text(path, "result file", hint="; a result file is the JSON that elm-eval writes")
    try:
        return _ADAPTER.validate_json(text)
    except ValidationError as exc:
        raise ElmEvalError(f"{path}: not an elm-eval result file: {describe_validation_error(exc)}") from None


class ModelSummary(BaseModel):
    """One model's row of a report."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants", validate_assignment=True)
    model: str
    num_parameters: int | None = None
    latency_ms: float | None = None
    latency_at: tuple[int, int] | None = None
    task_scores: dict[str, float] = Field(default_factory=dict)
    perplexities: dict[str, float] = Field(default_factory=dict)
    mean_task_score: float | None = None
    perplexity: float | None = None


def summarize(results: Sequence[Result], latency_at: tuple[int, int] | None = None) -> list[ModelSummary]:
    """One summary per model name, in first-seen order. Latency is taken at ``latency_at`` (batch,
    seq), by default at each latency result's first grid entry."""
    rows: dict[str, ModelSummary] = {}
    losses: dict[str, list[float]] = {}
    for result in results:
        row = rows.setdefault(result.model, ModelSummary(model=result.model))
        if isinstance(result, TaskResult):
            row.task_scores[result.task] = result.score
            row.num_parameters = row.num_parameters or result.num_parameters
        elif isinstance(result, LMResult):
            row.perplexities[result.objective] = result.perplexity
            losses.setdefault(result.model, []).append(result.loss)
        else:
            if not result.entries:
                raise ElmEvalError(f"latency result of {result.model!r} has no entries")
            try:
                entry = result.entry(*latency_at) if latency_at else result.entries[0]
            except KeyError:
                grid = sorted({(e.batch_size, e.seq_length) for e in result.entries})
                raise ElmEvalError(
                    f"latency_at {tuple(latency_at or ())}: {result.model!r} was measured at (batch, seq) "
                    f"{grid}, not there"
                ) from None
            row.latency_ms = entry.stats.median_ms
            row.latency_at = (entry.batch_size, entry.seq_length)
            row.num_parameters = result.num_parameters
    for row in rows.values():
        if row.task_scores:
            row.mean_task_score = sum(row.task_scores.values()) / len(row.task_scores)
        if row.model in losses:
            row.perplexity = math.exp(sum(losses[row.model]) / len(losses[row.model]))
    return list(rows.values())


def summary_markdown(summaries: Sequence[ModelSummary]) -> str:
    tasks = list(dict.fromkeys(task for row in summaries for task in row.task_scores))
    at = next((row.latency_at for row in summaries if row.latency_at), None)
    latency_header = f"latency ms (batch {at[0]} x seq {at[1]})" if at else "latency ms"
    header = ["model", "params", latency_header, *tasks, "mean score", "perplexity"]
    rows = [
        [
            row.model,
            _fmt(row.num_parameters),
            _fmt(row.latency_ms, 3),
            *[_fmt(row.task_scores.get(task)) for task in tasks],
            _fmt(row.mean_task_score),
            _fmt(row.perplexity, 3),
        ]
        for row in summaries
    ]
    return "# elm-eval report\n\n" + _table(header, rows)


class ReportFiles(BaseModel):
    model_config = ConfigDict(validate_assignment=True)
    summary_json: Path
    summary_markdown: Path
    score_vs_params: Path | None = None
    score_vs_latency: Path | None = None
    loss_curves: Path | None = None


def write_report(
    results: Sequence[Result],
    out_dir: str | Path,
    *,
    loss_curves: Mapping[str, Sequence[float]] | None = None,
    latency_at: tuple[int, int] | None = None,
) -> ReportFiles:
    """Write summary JSON/Markdown and PNG plots for ``results``; ``loss_curves`` adds named curves to
    the fine-tuning loss curves found in task results."""
    if not results:
        raise ElmEvalError("no results to report")
    summaries = summarize(results, latency_at)
    out = make_output_dir(Path(out_dir))
    files = ReportFiles(summary_json=out / "summary.json", summary_markdown=out / "summary.md")
    payload = TypeAdapter(list[ModelSummary]).dump_json(summaries, indent=2)
    write_file(files.summary_json, payload + b"\n")
    write_file(files.summary_markdown, summary_markdown(summaries))

    by_score = any(row.mean_task_score is not None for row in summaries)
    y_label = "mean task score" if by_score else "perplexity (lower is better)"
    for x_field, x_label, target in (
        ("num_parameters", "parameters", "score_vs_params"),
        ("latency_ms", "latency (ms, median)", "score_vs_latency"),
    ):
        placed = [
            row
            for row in summaries
            if getattr(row, x_field) is not None
            and (row.mean_task_score if by_score else row.perplexity) is not None
        ]
        if placed:
            path = plot_pareto(
                [row.model for row in placed],
                [float(getattr(row, x_field)) for row in placed],
                [float(row.mean_task_score if by_score else row.perplexity) for row in placed],  # type: ignore[arg-type]
                out / f"{target}.png",
                x_label=x_label,
                y_label=y_label,
                maximize_y=by_score,
            )
            setattr(files, target, path)

    curves = dict(loss_curves or {})
    for result in results:
        if isinstance(result, TaskResult) and result.train_loss_curve:
            curves[f"{result.model} / {result.task}"] = result.train_loss_curve
    if curves:
        files.loss_curves = plot_loss_curves(curves, out / "loss_curves.png", y_label="training loss")
    return files


__all__ = [
    "ModelSummary",
    "ReportFiles",
    "load_result",
    "pareto_front",
    "result_markdown",
    "summarize",
    "write_report",
    "write_result",
]
