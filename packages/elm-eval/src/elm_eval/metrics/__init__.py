"""Task metrics as ``evaluate`` modules shipped with the package and loaded by file path.

``evaluate.load("accuracy")`` fetches its script from the hub and fails offline; a module file of
our own loaded by path does not need the network. Each module file is self-contained (evaluate
copies it into its module cache), so shared code lives here, not in the modules.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import evaluate

from elm_eval.errors import ElmEvalError

MetricName = Literal["accuracy", "f1", "matthews_correlation", "pearson_spearman", "accuracy_f1"]
QAMetricName = Literal["squad", "squad_v2"]
"""Extractive question answering (elm_eval.qa): SQuAD v1.1 and v2.0, in percent like the official scripts."""

#: The key of each metric's result dict that is the task's single score.
PRIMARY_KEY: dict[str, str] = {
    "accuracy": "accuracy",
    "f1": "f1",
    "matthews_correlation": "matthews_correlation",
    "pearson_spearman": "pearson_spearman_mean",
    "accuracy_f1": "accuracy_f1_mean",
}
#: The same for the question-answering metrics.
QA_PRIMARY_KEY: dict[str, str] = {"squad": "f1", "squad_v2": "f1"}

METRICS_DIR = Path(__file__).resolve().parent


def metric_path(name: str) -> Path:
    """The module file of metric ``name``, for ``evaluate.load(str(path))``."""
    if name not in PRIMARY_KEY and name not in QA_PRIMARY_KEY:
        raise ElmEvalError(f"unknown metric {name!r}; choose one of {sorted(PRIMARY_KEY | QA_PRIMARY_KEY)}")
    return METRICS_DIR / f"{name}.py"


@cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load metric ``name`` offline from its module file (cached: loading copies and imports a script)."""
    return evaluate.load(str(metric_path(name)))


def compute_metric(
    name: str, predictions: list[int] | list[float], references: list[int] | list[float]
) -> tuple[float, dict[str, float]]:
    """Compute metric ``name``; return its primary score and every value it reports."""
    if not references:
        raise ElmEvalError(f"cannot compute {name!r} on an empty split")
    values = load_metric(name).compute(predictions=predictions, references=references)
    assert values is not None  # a metric that computes always returns a dict on the main process
    values = {key: float(value) for key, value in values.items()}
    return values[PRIMARY_KEY[name]], values


def compute_qa_metric(
    name: str, predictions: list[dict], references: list[dict], **kwargs: float
) -> tuple[float, dict[str, float]]:
    """Compute a SQuAD metric (``squad`` or ``squad_v2``) on records in the hub metrics' format
    (``{id, prediction_text[, no_answer_probability]}`` and ``{id, answers: {text, answer_start}}``);
    return its F1 and every value it reports."""
    if name not in QA_PRIMARY_KEY:
        raise ElmEvalError(f"unknown question-answering metric {name!r}; choose squad or squad_v2")
    if not references:
        raise ElmEvalError(f"cannot compute {name!r} on an empty split")
    values = load_metric(name).compute(predictions=predictions, references=references, **kwargs)
    assert values is not None
    values = {key: float(value) for key, value in values.items()}
    return values[QA_PRIMARY_KEY[name]], values
