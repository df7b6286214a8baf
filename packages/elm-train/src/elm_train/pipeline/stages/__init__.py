"""The pipeline's stages, in the order they run: each module declares its stage (``STAGE``: what
it reads and writes, where it runs, its settings, its ``--plan`` estimate, how later stages load
its product) beside the code that does it.

A stage reaches an earlier stage's product only through that stage's loaders, and only of a stage
it declares it reads (``tests/test_import_graph.py`` checks both).
"""

from __future__ import annotations

from elm_train.config import ConfigError
from elm_train.pipeline.stage import Stage
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

STAGES: tuple[Stage, ...] = tuple(
    module.STAGE
    for module in (data, teacher, supernet, multitask, search, heads, retrain, tasks, evaluate, report)
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise ConfigError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}")
