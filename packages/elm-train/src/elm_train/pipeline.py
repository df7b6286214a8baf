"""The stages in order, and running them with skip-what-is-done semantics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from elm_train.run import Run
from elm_train.stages import data, evaluate, heads, report, retrain, search, supernet, tasks, teacher

STAGES: dict[str, Callable[[Run], dict[str, Any]]] = {
    "data": data.run_stage,
    "teacher": teacher.run_stage,
    "supernet": supernet.run_stage,
    "search": search.run_stage,
    "heads": heads.run_stage,
    "retrain": retrain.run_stage,
    "tasks": tasks.run_stage,
    "evaluate": evaluate.run_stage,
    "report": report.run_stage,
}


def run_stage(
    run: Run, name: str, force: bool = False, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
    if run.is_done(name) and not force:
        echo(f"[elm-train] {name}: already done, skipped")
        return run.done_info(name)
    if not run.config.task_names and name == "tasks":
        run.mark_done(name, {})
        return {}
    echo(f"[elm-train] {name}: running")
    start = time.perf_counter()
    info = STAGES[name](run)
    seconds = time.perf_counter() - start
    run.metrics.log(name, event="stage_done", seconds=round(seconds, 2))
    echo(f"[elm-train] {name}: done in {seconds:.1f} s")
    return info


def run_all(run: Run, echo: Callable[[str], None] = print) -> dict[str, Any]:
    return {name: run_stage(run, name, echo=echo) for name in STAGES}
