"""The pipeline as data: every stage, in order, with what it reads and writes and who runs it.

The runner, ``--resume`` and the report all read :data:`STAGES`; nothing else lists the stages.
``reads`` names the stages whose outputs a stage needs (the runner refuses to start it before
they are done); ``writes`` names its artifacts (attributes of
:class:`~elm_train.pipeline.layout.RunLayout`); ``ranks`` says whether every process takes part
("all": the stage trains through DeepSpeed) or rank 0 works while the others wait ("rank0").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from elm_train.config import ConfigError, RunConfig
from elm_train.pipeline.stages import (
    data,
    evaluate,
    heads,
    multitask,
    report,
    retrain,
    search,
    supernet,
    tasks,
    teacher,
)

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def _always(config: RunConfig) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    name: str
    execute: Callable[[Run], dict[str, Any]]
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    ranks: Literal["all", "rank0"]
    applies: Callable[[RunConfig], bool] = _always
    """False: the stage has nothing to do for this config and is marked done with no output."""
    summary: str = ""

    def is_done(self, run: Run) -> bool:
        """A stage is done when its marker exists; the marker is written after all its outputs."""
        return run.layout.done_marker(self.name).is_file()


STAGES: tuple[Stage, ...] = (
    Stage(
        "data",
        data.execute,
        reads=(),
        writes=("tokenizer", "blocks"),
        ranks="rank0",
        summary="tokenizer, and the corpus cut into token blocks",
    ),
    Stage(
        "teacher",
        teacher.execute,
        reads=("data",),
        writes=("teacher_model", "teacher_training"),
        ranks="all",
        summary="load the teacher, or train a stand-in one",
    ),
    Stage(
        "supernet",
        supernet.execute,
        reads=("data", "teacher"),
        writes=("supernet_final",),
        ranks="all",
        summary="distil the supernet, growing FFNs by PCA",
    ),
    Stage(
        "multitask",
        multitask.execute,
        reads=("data", "teacher", "supernet"),
        writes=(
            "multitask_final",
            "multitask_heldout",
            "multitask_split",
            "task_model",
            "task_selection",
            "task_loss_curve",
        ),
        ranks="all",
        applies=lambda config: config.multitask.enabled,
        summary="fine-tune the supernet on all tasks at once, from the fine-tuned teachers",
    ),
    Stage(
        "search",
        search.execute,
        reads=("data", "teacher", "supernet", "multitask"),
        writes=("search_state", "search_result", "search_architecture", "search_plots", "latency_table"),
        ranks="rank0",
        summary="search the grown space for the best path under the budgets",
    ),
    Stage(
        "heads",
        heads.execute,
        reads=("data", "teacher", "supernet", "search"),
        writes=("heads_architecture", "heads_cka"),
        ranks="rank0",
        summary="choose each layer's head count by CKA",
    ),
    Stage(
        "retrain",
        retrain.execute,
        reads=("data", "teacher", "supernet", "multitask", "heads"),
        writes=("students", "student_model"),
        ranks="all",
        summary="retrain the found model and the baseline by distillation",
    ),
    Stage(
        "tasks",
        tasks.execute,
        reads=("data", "teacher", "retrain"),
        writes=("task_model", "task_selection", "glue_submission", "results"),
        ranks="all",
        applies=lambda config: bool(config.task_names),
        summary="fine-tune teacher and students on each task",
    ),
    Stage(
        "evaluate",
        evaluate.execute,
        reads=("data", "teacher", "retrain"),
        writes=("results", "onnx_dir"),
        ranks="rank0",
        summary="perplexity and latency of the exported models",
    ),
    Stage(
        "report",
        report.execute,
        reads=("retrain",),
        writes=("report_json", "report_markdown", "report_dir"),
        ranks="rank0",
        summary="JSON, Markdown and PNG report",
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise ConfigError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}")
