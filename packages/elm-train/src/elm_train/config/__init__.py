"""One pydantic config for a whole run.

Every stage reads its own section; the run directory keeps the config it was started with, and a
resumed run whose config differs is refused (``diff_configs`` says where). The named presets are
YAML files in ``elm_train/presets`` (:mod:`elm_train.presets`). ``plugins`` modules are imported
before the rest of a config is validated, so the losses and searchers they register can be named
in it.

The modules, one job each: :mod:`~elm_train.config.base` (the error and the section base),
:mod:`~elm_train.config.data`, :mod:`~elm_train.config.training`,
:mod:`~elm_train.config.search`, :mod:`~elm_train.config.tasks` and
:mod:`~elm_train.config.evaluation` (the sections), :mod:`~elm_train.config.run` (the whole
config), :mod:`~elm_train.config.reading` (strict YAML), :mod:`~elm_train.config.merge` (merging
and comparing configs) and :mod:`~elm_train.config.files` (config files and presets). Modules
inside this package import each other by their full names, never through this one.
"""

from elm_train.config.base import ConfigError
from elm_train.config.data import DataConfig, DataSource, SourceKind, TokenizerConfig, source_field
from elm_train.config.evaluation import EvalStageConfig, MonitorConfig
from elm_train.config.files import load_config
from elm_train.config.merge import WHOLE_VALUES, diff_configs, merge_configs
from elm_train.config.reading import validation_summary
from elm_train.config.run import RunConfig, import_plugins
from elm_train.config.search import SearchStageConfig
from elm_train.config.tasks import HiddenFeature, QATaskSettings, TaskOverrides, TaskStageConfig
from elm_train.config.training import (
    BaselineConfig,
    DeepSpeedConfig,
    DynamicConfig,
    HeadsStageConfig,
    KDConfig,
    MultitaskStageConfig,
    OptimConfig,
    RetrainStageConfig,
    SupernetStageConfig,
    TeacherConfig,
    TeacherTrainConfig,
)

__all__ = [
    "WHOLE_VALUES",
    "BaselineConfig",
    "ConfigError",
    "DataConfig",
    "DataSource",
    "DeepSpeedConfig",
    "DynamicConfig",
    "EvalStageConfig",
    "HeadsStageConfig",
    "HiddenFeature",
    "KDConfig",
    "MonitorConfig",
    "MultitaskStageConfig",
    "OptimConfig",
    "QATaskSettings",
    "RetrainStageConfig",
    "RunConfig",
    "SearchStageConfig",
    "SourceKind",
    "SupernetStageConfig",
    "TaskOverrides",
    "TaskStageConfig",
    "TeacherConfig",
    "TeacherTrainConfig",
    "TokenizerConfig",
    "diff_configs",
    "import_plugins",
    "load_config",
    "merge_configs",
    "source_field",
    "validation_summary",
]
