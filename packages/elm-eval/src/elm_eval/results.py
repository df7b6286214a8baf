"""Result records of every evaluator, as pydantic models so they round-trip through JSON.

Each carries a ``kind`` tag; ``report`` reads any mix of saved results back with
:data:`AnyResult` and groups them by ``model``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_CONFIG = ConfigDict(extra="forbid", ser_json_inf_nan="constants")


class LMResult(BaseModel):
    """Perplexity of one model on one text: ``perplexity == exp(loss)``, loss in nats per scored token."""

    model_config = _CONFIG
    kind: Literal["lm"] = "lm"
    model: str
    objective: Literal["masked-lm", "causal-lm"]
    loss: float
    perplexity: float
    num_scored_tokens: int
    num_sequences: int
    settings: dict[str, Any] = Field(default_factory=dict)


class TaskResult(BaseModel):
    """Fine-tune-and-score outcome; ``score`` is the task's primary metric on the validation split."""

    model_config = _CONFIG
    kind: Literal["task"] = "task"
    model: str
    task: str
    metric: str
    score: float
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float] | None = None
    num_parameters: int
    num_train_examples: int
    num_validation_examples: int
    train_loss_curve: list[float] = Field(default_factory=list)
    validation_score_per_epoch: list[float] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    validation_predictions: list[int] | list[float] | None = None
    """The prediction behind ``score`` for every validation example, in the split's order (class
    ids, or values for regression): what a paired comparison of two models needs
    (:func:`elm_eval.paired_bootstrap`). ``None`` in results written before it existed."""


class TaskPredictions(BaseModel):
    """A fine-tuned classifier's prediction for every example of one split, with the labels and
    the task metric's score on them (:func:`elm_eval.predict_task`)."""

    model_config = _CONFIG
    model: str
    task: str
    split: str
    metric: str
    score: float
    predictions: list[int] | list[float]
    labels: list[int] | list[float]


class LatencyStats(BaseModel):
    """Wall-clock statistics of repeated calls, in milliseconds, measured after warm-up calls."""

    model_config = _CONFIG
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    device: str
    num_threads: int


class LatencyEntry(BaseModel):
    """Latency and peak memory of a whole model at one batch size and sequence length."""

    model_config = _CONFIG
    batch_size: int
    seq_length: int
    stats: LatencyStats
    peak_memory_bytes: int | None = None


class LatencyResult(BaseModel):
    """A latency grid for one model; ``peak_memory_method`` says how memory was measured."""

    model_config = _CONFIG
    kind: Literal["latency"] = "latency"
    model: str
    runtime: str = "pytorch-fp32"
    """What ran the model: ``pytorch-fp32`` (eager), ``onnxruntime-fp32`` or ``onnxruntime-int8``."""
    device: str
    num_threads: int
    num_parameters: int
    parameter_bytes: int
    peak_memory_method: str
    entries: list[LatencyEntry]

    def entry(self, batch_size: int, seq_length: int) -> LatencyEntry:
        for item in self.entries:
            if item.batch_size == batch_size and item.seq_length == seq_length:
                return item
        raise KeyError(f"no latency entry for batch {batch_size} x seq {seq_length} in {self.model!r}")


AnyResult = Annotated[LMResult | TaskResult | LatencyResult, Field(discriminator="kind")]
