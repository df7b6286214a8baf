"""Deployment figures of an exported student: ONNX fp32 and int8 files, three runtimes' latency,
and the int8 model's perplexity beside fp32's, measured by elm-eval (the code a user runs on any
model) and summarised as plain data for the run's report and the student's model card.

The files themselves are elm-eval's (:func:`elm_eval.export_onnx`); this module decides what the
run measures of them and how the figures read.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

import elm_eval
from elm_eval import LatencyConfig, LMResult, OrtModel, TaskSpec, TaskSplit
from elm_train.runtime.errors import ElmTrainError

RUNTIME_LABELS = {
    "pytorch-fp32": "PyTorch fp32 (eager)",
    "onnxruntime-fp32": "ONNX Runtime fp32",
    "onnxruntime-int8": "ONNX Runtime int8",
}


def onnx_enabled(setting: bool | None) -> bool:
    """``eval.onnx``: None means "when onnxruntime is installed"; True without it is an input error."""
    installed = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
    if setting and not installed:
        raise ElmTrainError("eval.onnx: true needs onnx and onnxruntime; pip install 'elm-eval[onnx]'")
    return installed if setting is None else setting


def deploy(
    name: str,
    model_dir: str | Path,
    out_dir: Path,
    head: str,
    latency: LatencyConfig,
    perplexity: Callable[[Any, str], LMResult] | None,
) -> tuple[dict[str, Any], list[Any]]:
    """Export ``model_dir`` to ``out_dir`` and measure it; returns (summary, elm-eval results).

    ``perplexity(model, label)`` scores a model (a directory or an :class:`elm_eval.OrtModel`) by
    the run's protocol; it is called for ONNX fp32 and int8 (PyTorch's own is the evaluate stage's).
    """
    export = elm_eval.export_onnx(model_dir, out_dir, head, name=name)  # type: ignore[arg-type]
    results: list[Any] = list(elm_eval.compare_runtimes(model_dir, export, latency, name=name))
    results[0] = results[0].model_copy(update={"model": f"{name} ({head}, pytorch fp32)"})
    summary: dict[str, Any] = {
        "files": {kind: str(path) for kind, path in export.files().items()},
        "head": head,
        "max_abs_diff": export.max_abs_diff,
        "latency": {
            r.runtime: {
                str(e.batch_size): {"median_ms": e.stats.median_ms, "std_ms": e.stats.std_ms}
                for e in r.entries
            }
            for r in results
        },
        "seq_length": results[0].entries[0].seq_length,
        "num_threads": results[0].num_threads,
        "bytes": {r.runtime: r.parameter_bytes for r in results},
    }
    if perplexity is not None:
        scored = {}
        for precision in ("fp32", "int8"):
            result = perplexity(OrtModel(export, precision), f"{name} (onnxruntime {precision})")
            results.append(result)
            scored[f"onnxruntime-{precision}"] = result.perplexity
        summary["perplexity"] = scored
    return summary, results


def task_scores(
    model_dir: str | Path,
    out_dir: Path,
    spec: TaskSpec,
    split: TaskSplit,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
) -> dict[str, Any]:
    """A fine-tuned classifier's validation score in PyTorch fp32 and as an int8 ONNX model (the
    same predictions route for both); its ONNX files go to ``out_dir``."""
    export = elm_eval.export_onnx(model_dir, out_dir, "sequence-classification")
    torch_model = elm_eval.loading.load_model(model_dir, "sequence-classification")
    scores = {
        "pytorch-fp32": elm_eval.score_split(torch_model, tokenizer, spec, split, max_length)[0],
        "onnxruntime-int8": elm_eval.score_split(
            OrtModel(export, "int8"), tokenizer, spec, split, max_length
        )[0],
    }
    return {
        "metric": spec.metric,
        "scores": scores,
        "examples": len(split),
        "max_abs_diff": export.max_abs_diff,
    }


def markdown_rows(summary: dict[str, Any], pytorch_perplexity: float | None = None) -> list[str]:
    """A table of the three runtimes: latency (median and spread) per batch size, weights, perplexity."""
    batches = sorted({int(b) for runtime in summary["latency"].values() for b in runtime}, key=int)
    perplexity = dict(summary.get("perplexity", {}))
    if pytorch_perplexity is not None:
        perplexity["pytorch-fp32"] = pytorch_perplexity
    header = " | ".join(f"batch {b} (ms)" for b in batches)
    lines = [f"| runtime | {header} | weights | perplexity |", "|---|" + "---:|" * (len(batches) + 2)]
    order = list(RUNTIME_LABELS)
    ranked = sorted(summary["latency"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
    for runtime, by_batch in ranked:
        cells = []
        for b in batches:
            entry = by_batch.get(str(b))
            cells.append(f"{entry['median_ms']:.2f} ± {entry['std_ms']:.2f}" if entry else "-")
        weights = summary["bytes"].get(runtime)
        shown = f"{weights / 1e6:.2f} MB" if weights else "-"
        ppl = perplexity.get(runtime)
        lines.append(
            f"| {RUNTIME_LABELS.get(runtime, runtime)} | {' | '.join(cells)} | {shown} | "
            f"{f'{ppl:.2f}' if ppl is not None else '-'} |"
        )
    return lines


def task_rows(summary: dict[str, Any]) -> list[str]:
    """Each task's validation score, PyTorch fp32 beside ONNX Runtime int8."""
    tasks = summary.get("tasks", {})
    if not tasks:
        return []
    lines = ["| task (validation) | metric | PyTorch fp32 | ONNX Runtime int8 |", "|---|---|---:|---:|"]
    for task, item in tasks.items():
        s = item["scores"]
        lines.append(
            f"| {task} ({item['examples']} examples) | {item['metric']} | {s['pytorch-fp32']:.4f} "
            f"| {s['onnxruntime-int8']:.4f} |"
        )
    return lines


def describe(summary: dict[str, Any]) -> str:
    """One sentence on how the figures were measured."""
    return (
        f"{summary['head']} head, {summary['seq_length']} tokens, CPU, {summary['num_threads']} thread(s); "
        f"median ± standard deviation; max |ONNX fp32 - PyTorch| logit difference "
        f"{summary['max_abs_diff']:.1e}"
    )
