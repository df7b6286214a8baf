"""Running stages in order, skipping what is done, with the rank policy each stage declares."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from elm_train import distributed as dist
from elm_train.pipeline.context import Run
from elm_train.pipeline.declarations import STAGES, get_stage


def run_stage(
    run: Run, name: str, force: bool = False, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run one stage (unless done and not ``force``); returns what it reports in ``done.json``.

    Stages it reads that have not finished run first (never forced), so any stage can be asked
    for on a fresh run directory.
    """
    stage = get_stage(name)
    if stage.is_done(run) and not force:
        echo(f"[elm-train] {name}: already done, skipped")
        return run.done_info(name)
    for needed in stage.reads:
        if not get_stage(needed).is_done(run):
            run_stage(run, needed, echo=echo)
    if not stage.applies(run.config):
        run.mark_done(name, {})
        dist.barrier()
        return {}
    echo(f"[elm-train] {name}: running")
    start = time.perf_counter()
    if stage.ranks == "all" or dist.rank() == 0:
        info = stage.execute(run)
        run.mark_done(name, info)
    dist.barrier()  # rank-0 stages: the others wait here until the outputs and marker exist
    info = run.done_info(name)
    seconds = time.perf_counter() - start
    run.metrics.log(name, event="stage_done", seconds=round(seconds, 2))
    echo(f"[elm-train] {name}: done in {seconds:.1f} s")
    return info


def run_all(run: Run, echo: Callable[[str], None] = print) -> dict[str, Any]:
    return {stage.name: run_stage(run, stage.name, echo=echo) for stage in STAGES}
