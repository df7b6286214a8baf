"""A run: one config bound to one run directory, and what the stages share.

The run directory keeps the config it was started with, so a resumed run whose config differs
is refused. The shared resources (tokenizer, blocks, teacher) are only *loaded* here, from what
the data and teacher stages wrote; producing them is those stages' work.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import yaml
from pydantic import ValidationError
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

import elm_eval
import elm_space
from elm_eval import TaskSpec
from elm_space import Architecture, SearchSpace
from elm_train import distributed as dist
from elm_train import teacher as teacher_lib
from elm_train.checkpoint import write_json_atomic
from elm_train.config import ConfigError, RunConfig, diff_configs
from elm_train.global_batch import check_run
from elm_train.kd import TeacherFeatures, check_layer_maps
from elm_train.metrics import MetricsLog
from elm_train.monitor import RunMonitor
from elm_train.multitask_training import WEIGHTS_FILE as MULTITASK_WEIGHTS
from elm_train.multitask_training import MultitaskKD, load_multitask
from elm_train.pipeline.layout import RunLayout
from elm_train.supernet_training import SPACE_FILE, TrainedSupernet, load_supernet
from elm_train.task_distill import task_spec


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
        if not (self.layout.tokenizer / "tokenizer_config.json").is_file():
            raise ConfigError(
                f"no tokenizer in {self.dir} yet; run the data stage first (elm-train stage data)"
            )
        return AutoTokenizer.from_pretrained(self.layout.tokenizer)

    @cached_property
    def initial_space(self) -> SearchSpace:
        return self.config.search_space(vocab_size=len(self.tokenizer))

    @cached_property
    def blocks(self) -> datasets.DatasetDict:
        if not (self.layout.blocks / "dataset_dict.json").is_file():
            raise ConfigError(
                f"no data blocks in {self.dir} yet; run the data stage first (elm-train stage data)"
            )
        return datasets.load_from_disk(str(self.layout.blocks))

    @property
    def teacher_source(self) -> str:
        """The teacher's checkpoint: the configured one, or the stand-in the teacher stage trained."""
        if self.config.teacher.train is None:
            assert self.config.teacher.name_or_path is not None  # the config's validator says so
            return teacher_lib.resolve(self.config.hub_source(self.config.teacher.name_or_path))
        trained = self.layout.teacher_model
        if not (trained / "config.json").is_file():
            raise ConfigError(
                f"the stand-in teacher has not been trained in {self.dir} yet; run elm-train stage teacher"
            )
        return str(trained)

    @cached_property
    def teacher(self) -> PreTrainedModel:
        model = teacher_lib.load_teacher(self.teacher_source, causal=self.causal)
        if self.causal and int(model.config.vocab_size) != len(self.tokenizer):
            raise ConfigError(
                f"the teacher's vocabulary has {model.config.vocab_size} entries but the tokenizer "
                f"({self.tokenizer_name}) has {len(self.tokenizer)}; logits distillation needs the same "
                "vocabulary: use tokenizer.source 'teacher'"
            )
        check_layer_maps(self.config, teacher_lib.teacher_layers(model))
        return model

    @cached_property
    def teacher_features(self) -> TeacherFeatures:
        """One set of feature taps on the teacher for the whole run (taps added per stage would
        pile up on the shared teacher and collect every feature several times)."""
        return TeacherFeatures(self.teacher)

    # --- what earlier stages recorded -----------------------------------------------------------
    def trained_supernet(self) -> TrainedSupernet:
        """The supernet stage's model (with its projections, in eval mode) and grown space."""
        cfg = self.config
        teacher = self.teacher_features
        return load_supernet(
            self.layout.supernet_final,
            cfg.supernet.kd,
            cfg.supernet.lm_weight_for(self.causal),
            teacher.width,
            teacher.num_layers,
            cfg.seed,
            cfg.model,
        )

    def multitask_model(self) -> MultitaskKD:
        """The multitask stage's supernet (per-task classifiers on one pooler), in eval mode."""
        if not (self.layout.multitask_final / MULTITASK_WEIGHTS).is_file():
            raise ConfigError(f"no multitask supernet in {self.dir} yet; run elm-train stage multitask")
        specs = {
            name: elm_eval.with_hub_mirrors(task_spec(name, self.config.tasks), self.config.hub_mirrors)
            for name in self.config.multitask_task_names
        }
        return load_multitask(
            self.layout.multitask_final,
            self.trained_supernet().model,
            specs,
            self.config.tasks,
            self.config.seed,
        )

    def multitask_heldout(self) -> dict[str, tuple[TaskSpec, datasets.Dataset]]:
        """Each multitask task's spec and held-out training rows (encoded), as the stage kept them."""
        out = {}
        for name in self.config.multitask_task_names:
            spec = elm_eval.with_hub_mirrors(task_spec(name, self.config.tasks), self.config.hub_mirrors)
            out[name] = (spec, datasets.load_from_disk(str(self.layout.multitask_heldout_task(name))))
        return out

    def grown_space(self) -> SearchSpace:
        """The space as supernet training left it (grown FFN widths), without loading weights."""
        return elm_space.load(SearchSpace, self.layout.supernet_final / SPACE_FILE)

    def architecture(self, path: Path) -> Architecture:
        """An architecture a stage saved as JSON."""
        return Architecture.model_validate_json(path.read_text())

    def students(self) -> dict[str, dict[str, Any]]:
        """The retrain stage's students by name, in training order: architecture, init, model dir."""
        path = self.layout.students
        if not path.is_file():
            raise ConfigError(f"no retrained students in {self.dir} yet; run elm-train stage retrain")
        records = json.loads(path.read_text())
        return {
            name: {
                **record,
                "architecture": Architecture.model_validate(record["architecture"]),
                "model_dir": self.layout.student_model(name),
            }
            for name in records["order"]
            for record in [records["students"][name]]
        }
