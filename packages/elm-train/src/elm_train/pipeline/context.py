"""A run: one config bound to one run directory, and what the stages share.

The run directory keeps the config it was started with, so a resumed run whose config differs
is refused. The resources every stage shares (tokenizer, blocks, teacher) are kept here, one copy
per process; how they are loaded is the data and teacher stages' own code, as every stage's
product is loaded by its own module's loaders.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import yaml
from pydantic import ValidationError
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from elm_space import SearchSpace
from elm_train.config import ConfigError, RunConfig, diff_configs
from elm_train.pipeline.layout import RunLayout
from elm_train.pipeline.stage import Stage
from elm_train.pipeline.stages import STAGES
from elm_train.pipeline.stages import data as data_stage
from elm_train.pipeline.stages import teacher as teacher_stage
from elm_train.runtime import distributed as dist
from elm_train.runtime.fsio import write_json_atomic
from elm_train.runtime.metrics import MetricsLog
from elm_train.runtime.monitor import RunMonitor
from elm_train.training.global_batch import check_run
from elm_train.training.kd import TeacherFeatures


def _saved_config(path: Path) -> RunConfig:
    """The config a run was started with, or a clear error naming the file if it is damaged."""
    try:
        return RunConfig.model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, UnicodeDecodeError, ValidationError) as err:
        raise ConfigError(
            f"{path}: the run's saved config cannot be read ({type(err).__name__}); "
            "the run directory is damaged: start a new --run-dir"
        ) from err


class Run:
    def __init__(self, config: RunConfig, run_dir: str | Path) -> None:
        self.config = config
        self.layout = RunLayout(Path(run_dir))
        monitor = RunMonitor(config.monitor, self.layout.monitor_dir, config.name)
        self.metrics = MetricsLog(self.layout.metrics, enabled=dist.rank() == 0, monitor=monitor)

    @property
    def dir(self) -> Path:
        return self.layout.root

    @classmethod
    def open(cls, config: RunConfig, run_dir: str | Path) -> Run:
        """Start a run, or continue one with the same config; a different config is refused.

        Under a launcher (several processes) the process group starts here, and only rank 0
        writes to the run directory.
        """
        if dist.is_launched():
            dist.init_distributed()
        check_run(config, dist.world_size())  # every global batch splits over the processes
        layout = RunLayout(Path(run_dir))
        if layout.config.is_file():
            old = _saved_config(layout.config)
            changes = diff_configs(old, config)
            if changes:
                raise ConfigError(
                    f"{run_dir} was started with a different config; refusing to resume it. Differences:\n  "
                    + "\n  ".join(changes)
                    + "\nUse another --run-dir, or the original config."
                )
        elif dist.rank() == 0:
            layout.root.mkdir(parents=True, exist_ok=True)
            tmp = layout.config.with_name(layout.config.name + ".tmp")
            tmp.write_text(config.to_yaml())
            tmp.rename(layout.config)
        dist.barrier()
        return cls(config, layout.root)

    # --- stage bookkeeping -------------------------------------------------------------------
    @property
    def stages(self) -> tuple[Stage, ...]:
        """The pipeline's stages in order (what the report walks)."""
        return STAGES

    def stage_dir(self, name: str) -> Path:
        path = self.layout.stage_dir(name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def is_done(self, name: str) -> bool:
        return self.layout.done_marker(name).is_file()

    def done_info(self, name: str) -> dict[str, Any]:
        path = self.layout.done_marker(name)
        if not path.is_file():
            raise ConfigError(
                f"stage {name!r} has not finished in {self.dir}; run it first (elm-train stage {name})"
            )
        return json.loads(path.read_text())

    def mark_done(self, name: str, info: dict[str, Any]) -> None:
        """Rank 0 writes the marker; the runner makes the other ranks wait for it."""
        if dist.rank() == 0:
            write_json_atomic(self.stage_dir(name) / "done.json", info)

    # --- what the stages share (loaded, never produced, here) ----------------------------------
    @property
    def causal(self) -> bool:
        return self.config.causal

    @property
    def tokenizer_name(self) -> str:
        """Where the run's tokenizer comes from, as the report and the data stage say it."""
        cfg = self.config
        source = cfg.tokenizer_source
        if source == "bpe":
            return f"bpe:{cfg.tokenizer.vocab_size}:{cfg.tokenizer.min_frequency}"
        if source == "gpt2-files":
            return f"gpt2-files:{Path(str(cfg.tokenizer.files)).expanduser().resolve()}"
        return str(cfg.teacher.tokenizer or cfg.teacher.name_or_path)

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return data_stage.load_tokenizer(self)

    @cached_property
    def initial_space(self) -> SearchSpace:
        return self.config.search_space(vocab_size=len(self.tokenizer))

    @cached_property
    def blocks(self) -> datasets.DatasetDict:
        return data_stage.load_blocks(self)

    @property
    def teacher_source(self) -> str:
        """The teacher's checkpoint: the configured one, or the stand-in the teacher stage trained."""
        return teacher_stage.source(self)

    @cached_property
    def teacher(self) -> PreTrainedModel:
        return teacher_stage.load_teacher(self)

    @cached_property
    def teacher_features(self) -> TeacherFeatures:
        """One set of feature taps on the teacher for the whole run (taps added per stage would
        pile up on the shared teacher and collect every feature several times)."""
        return TeacherFeatures(self.teacher)
