"""Live curves through DeepSpeed's monitor: TensorBoard, CSV and W&B, one writer per stage.

The ``monitor:`` config becomes the ``tensorboard``, ``csv_monitor`` and ``wandb`` blocks of each
training engine's DeepSpeed config, so DeepSpeed's own ``MonitorMaster`` writes the engine's
learning rate (``Train/Samples/lr``); the training loop writes its loss there too, under
DeepSpeed's name for it (``Train/Samples/train_loss``, as the pipeline engine does), and each
stage's series (every KD term, the sampled path's size, growth, task dev scores) under
``<stage>/<name>`` by optimizer step. Work outside an engine (the search's fitness per generation)
goes through a ``MonitorMaster`` built from the same blocks. Each stage is its own "job"
(``RUN/monitor/tensorboard/<stage>``), so TensorBoard shows one run per stage and curves of
different engines never share an axis. Only rank 0 writes (DeepSpeed's rule).

W&B is never required: asked for but not installed or not logged in, it is left out with a
warning, and nothing is sent anywhere else.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the settings' type only: the runtime wing imports nothing of elm-train's above it
    from elm_train.config import MonitorConfig

Event = tuple[str, float, int]
"""(tag, value, step): DeepSpeed's monitor event."""

LOSS_TAG = "Train/Samples/train_loss"
"""DeepSpeed's name for the training loss (its pipeline engine writes it; ours writes it here)."""


def wandb_problem() -> str | None:
    """Why W&B cannot be used here (not installed, not logged in), or None when it can."""
    if importlib.util.find_spec("wandb") is None:
        return "wandb is not installed"
    if os.environ.get("WANDB_API_KEY"):
        return None
    try:
        import wandb

        key = wandb.api.api_key  # netrc or settings; no network
    except Exception as exc:  # wandb's own errors vary by version; any of them means "not usable"
        return f"wandb cannot read its login ({type(exc).__name__})"
    return None if key else "wandb is not logged in (run `wandb login`)"


class RunMonitor:
    """The run's monitor settings and, for series outside an engine, its writers (rank 0)."""

    def __init__(self, config: MonitorConfig, root: Path, run_name: str = "elm-train") -> None:
        self.config = config
        self.root = root
        self.run_name = run_name
        self.use_wandb = False
        if config.wandb:
            problem = wandb_problem()
            if problem:
                warnings.warn(f"monitor.wandb: left out: {problem}", RuntimeWarning, stacklevel=2)
            self.use_wandb = problem is None
        self._writers: dict[str, Any] = {}

    @property
    def enabled(self) -> bool:
        return self.config.tensorboard or self.config.csv or self.use_wandb

    def blocks(self, job: str) -> dict[str, Any]:
        """The monitor blocks of a DeepSpeed config for stage ``job`` (empty when all are off)."""
        blocks: dict[str, Any] = {}
        if self.config.tensorboard:
            path = str(self.root / "tensorboard")
            blocks["tensorboard"] = {"enabled": True, "output_path": path, "job_name": job}
        if self.config.csv:
            blocks["csv_monitor"] = {"enabled": True, "output_path": str(self.root / "csv"), "job_name": job}
        if self.use_wandb:
            blocks["wandb"] = {"enabled": True, "project": self.config.wandb_project, "group": self.run_name}
        return blocks

    def writer(self, job: str) -> Any | None:
        """DeepSpeed's ``MonitorMaster`` for ``job``, for series written outside an engine."""
        if not self.enabled:
            return None
        if job not in self._writers:
            from deepspeed.monitor.config import get_monitor_config
            from deepspeed.monitor.monitor import MonitorMaster

            from elm_train.runtime.distributed import init_distributed

            init_distributed()  # MonitorMaster asks deepspeed.comm for the rank
            self._writers[job] = MonitorMaster(get_monitor_config(self.blocks(job)))
        return self._writers[job]

    def write(self, job: str, events: Iterable[Event]) -> None:
        writer = self.writer(job)
        events = [(tag, float(value), int(step)) for tag, value, step in events]
        if writer is not None and events:
            writer.write_events(events)


def engine_write(engine: Any, events: Iterable[Event]) -> None:
    """Write ``events`` through the engine's own monitor (nothing when its monitor is off; DeepSpeed
    writes on rank 0 only)."""
    monitor = getattr(engine, "monitor", None)
    if monitor is None or not monitor.enabled:
        return
    events = [(tag, float(value), int(step)) for tag, value, step in events]
    if events:
        monitor.write_events(events)


def step_events(stage: str, step: int, values: Mapping[str, Any]) -> list[Event]:
    """``<stage>/<name>`` events for the numbers among ``values`` (strings and flags are skipped)."""
    return [
        (f"{stage}/{key}", float(value), step)
        for key, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]


def search_events(result: Any, fitness: str) -> list[Event]:
    """The search's best-so-far and mean fitness of the paths each generation evaluated."""
    events: list[Event] = []
    for summary in result.generations:
        values = [r.values[fitness] for r in result.records if r.generation == summary.generation]
        events.append(("search/best_fitness", summary.best, summary.generation))
        if values:
            events.append(("search/mean_fitness", sum(values) / len(values), summary.generation))
        events.append(("search/evaluations", summary.evaluations, summary.generation))
    return events
