"""ELM models, the elastic supernet, the training building blocks, and the pipeline behind
the ``elm-train`` command.

Two layers. The library (everything exported here) takes explicit inputs: a space, a teacher,
token blocks, typed settings, an output directory, a metrics sink. It knows nothing of run
directories, so it composes into a user's own script. The pipeline (:mod:`elm_train.pipeline`)
is a list of stage declarations, each a thin adapter from a run directory to this library.

Importing this package is cheap; the names below load their modules (and torch) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from elm_train import _moved

__version__ = "0.2.0"
_moved.install()  # the old import paths of modules moved into wings, for one release

_EXPORTS = {
    # settings
    "RunConfig": "elm_train.config",
    "DataConfig": "elm_train.config",
    "DeepSpeedConfig": "elm_train.config",
    "OptimConfig": "elm_train.config",
    "KDConfig": "elm_train.config",
    "DynamicConfig": "elm_train.config",
    "SupernetStageConfig": "elm_train.config",
    "SearchStageConfig": "elm_train.config",
    "HeadsStageConfig": "elm_train.config",
    "RetrainStageConfig": "elm_train.config",
    "TaskStageConfig": "elm_train.config",
    "load_config": "elm_train.config",
    "merge_configs": "elm_train.config",
    "preset": "elm_train.presets",
    "PRESETS": "elm_train.presets",
    "ElmTrainError": "elm_train.runtime.errors",
    # data and teacher
    "load_corpus": "elm_train.data",
    "build_blocks": "elm_train.data",
    "load_teacher": "elm_train.teacher",
    "load_tokenizer": "elm_train.teacher",
    "TeacherFeatures": "elm_train.training.kd",
    "build_kd_loss": "elm_train.training.kd",
    "student_features": "elm_train.training.kd",
    "heldout_texts": "elm_train.data",
    # supernet distillation with the dynamic dimension
    "SupernetKD": "elm_train.training.supernet_training",
    "SupernetTraining": "elm_train.training.supernet_training",
    "TrainedSupernet": "elm_train.training.supernet_training",
    "build_supernet_kd": "elm_train.training.supernet_training",
    "save_supernet": "elm_train.training.supernet_training",
    "load_supernet": "elm_train.training.supernet_training",
    # multitask fine-tuning of the supernet
    "MultitaskKD": "elm_train.training.multitask_training",
    "MultitaskTask": "elm_train.training.multitask_training",
    "MultitaskTraining": "elm_train.training.multitask_training",
    "TaskFitness": "elm_train.search.fitness",
    "build_multitask_kd": "elm_train.training.multitask_training",
    "heldout_split": "elm_train.training.multitask_training",
    "load_multitask": "elm_train.training.multitask_training",
    "save_multitask": "elm_train.training.multitask_training",
    # search and heads
    "SupernetFitness": "elm_train.search.fitness",
    "WpcaFitness": "elm_train.search.fitness",
    "ParamsFitness": "elm_train.search.fitness",
    "build_fitness": "elm_train.search.fitness",
    "register_fitness": "elm_train.search.fitness",
    "FitnessInputs": "elm_train.search.fitness",
    "search_constraints": "elm_train.search.searching",
    "search_space": "elm_train.search.searching",
    "choose_heads": "elm_train.search.head_choice",
    "measure_table": "elm_train.search.latency_table",
    # retraining and tasks
    "StudentKD": "elm_train.training.retraining",
    "Retraining": "elm_train.training.retraining",
    "baseline_architecture": "elm_train.training.retraining",
    "build_student": "elm_train.training.retraining",
    "TaskKD": "elm_train.training.task_distill",
    "TaskTraining": "elm_train.training.task_distill",
    "QATaskTraining": "elm_train.training.qa_distill",
    "QATaskKD": "elm_train.training.qa_distill",
    "QAValidation": "elm_train.training.qa_distill",
    "task_spec": "elm_train.training.task_distill",
    "encode": "elm_train.training.task_distill",
    "score": "elm_train.training.task_distill",
    "classifier": "elm_train.training.task_distill",
    # loops and bookkeeping
    "LoopSettings": "elm_train.training.loop",
    "TrainLoop": "elm_train.training.loop",
    "MetricsLog": "elm_train.runtime.metrics",
    "MetricsSink": "elm_train.runtime.metrics",
    "NullMetrics": "elm_train.runtime.metrics",
    "eval_batches": "elm_train.training.batches",
    "write_json_atomic": "elm_train.runtime.fsio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Load an exported name's module on first use (``import elm_train`` stays light)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'elm_train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
