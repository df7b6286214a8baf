"""The pipeline layer: the stages of an ``elm-train run`` over one run directory.

A stage is a thin adapter from the run directory to the library (:mod:`elm_train`) and back,
declared in its own module under :mod:`elm_train.pipeline.stages`; :data:`STAGES` lists them in
order; :func:`run_all` and :func:`run_stage` run them; :class:`Run` binds a config to a run
directory; :class:`RunLayout` names every file in it.
"""

from elm_train.pipeline.context import Run
from elm_train.pipeline.layout import RunLayout
from elm_train.pipeline.runner import run_all, run_stage
from elm_train.pipeline.stage import Stage
from elm_train.pipeline.stages import STAGE_NAMES, STAGES, get_stage

__all__ = ["STAGES", "STAGE_NAMES", "Run", "RunLayout", "Stage", "get_stage", "run_all", "run_stage"]
