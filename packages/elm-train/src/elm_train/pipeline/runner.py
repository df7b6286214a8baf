"""Running stages in order, skipping what is done, with the rank policy each stage declares.

A stage that runs on rank 0 alone (the data stage tokenising a corpus, the search) can take
hours; the other ranks do not wait for it at a barrier, whose timeout is the process group's (30
minutes by default), but poll a file that rank 0 writes when the stage ends, finished or failed,
and meet rank 0 at a barrier only then. (A rank 0 that dies without writing it is ended with the
others by the launcher, which ends every rank when one fails.)
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from elm_train.pipeline.context import Run
from elm_train.pipeline.stages import STAGES, get_stage
from elm_train.runtime import distributed as dist
from elm_train.runtime.errors import ElmTrainError
from elm_train.runtime.fsio import write_json_atomic

POLL_SECONDS = 1.0
"""How often a waiting rank looks for rank 0's end of a stage."""


class RankZeroStageError(ElmTrainError):
    """A stage that rank 0 runs for every rank failed there; the other ranks stop with it."""


def _on_rank_zero(run: Run, name: str, execute: Callable[[], dict[str, Any]]) -> None:
    """``execute`` on rank 0 (and its ``done.json`` written) while the other ranks wait for it,
    however long it takes (see the module's docstring)."""
    if dist.world_size() == 1:
        run.mark_done(name, execute())
        return
    token = dist.broadcast_object(uuid.uuid4().hex if dist.rank() == 0 else None)
    ended = run.stage_dir(name) / f".ended-{token}.json"
    if dist.rank() == 0:
        try:
            run.mark_done(name, execute())
        except BaseException as err:
            write_json_atomic(ended, {"error": f"{type(err).__name__}: {err}"})
            raise
        write_json_atomic(ended, {"error": None})
    else:
        while not ended.is_file():
            time.sleep(POLL_SECONDS)
        error = json.loads(ended.read_text())["error"]
        if error:
            raise RankZeroStageError(f"the {name} stage failed on rank 0: {error}")
    dist.barrier()  # every rank is here now: no wait
    if dist.rank() == 0:
        ended.unlink(missing_ok=True)


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
    run.stage_dir(name)  # made here, so that a stage only names its files
    if stage.ranks == "all":
        run.mark_done(name, stage.execute(run))
        dist.barrier()
    else:  # the others wait (polling, not at a barrier) until the outputs and marker exist
        _on_rank_zero(run, name, lambda: stage.execute(run))
    info = run.done_info(name)
    seconds = time.perf_counter() - start
    run.metrics.log(name, event="stage_done", seconds=round(seconds, 2))
    echo(f"[elm-train] {name}: done in {seconds:.1f} s")
    return info


def run_all(run: Run, echo: Callable[[str], None] = print) -> dict[str, Any]:
    return {stage.name: run_stage(run, stage.name, echo=echo) for stage in STAGES}
