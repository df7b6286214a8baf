"""What a stage declares about itself; each stage module under :mod:`elm_train.pipeline.stages`
holds one :class:`Stage` as ``STAGE``, beside the code it names.

The runner, ``--resume``, ``--plan``, the CLI's stage list and the report all read these
declarations; nothing else lists the stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from elm_train.config import RunConfig
    from elm_train.pipeline.context import Run
    from elm_train.pipeline.sizing import PlanContext, StagePlan


def always(config: RunConfig) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    """One line: what the stage does (``elm-train stage --help``, ``--plan``)."""
    execute: Callable[[Run], dict[str, Any]]
    """Does the work; returns what ``done.json`` records."""
    reads: tuple[str, ...]
    """Stages whose outputs it needs: the runner runs them first."""
    writes: tuple[str, ...]
    """Its artifacts: attributes of :class:`~elm_train.pipeline.layout.RunLayout`."""
    ranks: Literal["all", "rank0"]
    """"all": every process takes part (the stage trains through DeepSpeed); "rank0": rank 0 works
    while the others wait for it (:mod:`elm_train.pipeline.runner`)."""
    settings: tuple[str, ...] = ()
    """The sections of the run config that configure it."""
    estimate: Callable[[PlanContext, StagePlan], None] | None = None
    """Fills in its steps, tokens and disk for ``--plan``."""
    loaders: tuple[Callable[[Run], Any], ...] = ()
    """How a later stage loads its product (each raises ConfigError, naming the stage to run,
    when the product is not there yet)."""
    applies: Callable[[RunConfig], bool] = always
    """False: the stage has nothing to do for this config and is marked done with no output."""

    def is_done(self, run: Run) -> bool:
        """A stage is done when its marker exists; the marker is written after all its outputs."""
        return run.layout.done_marker(self.name).is_file()
