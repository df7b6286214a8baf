"""The run directory: the config it was started with, per-stage outputs and completion markers.

Each stage writes into ``<run_dir>/<stage>/`` and finishes by writing ``done.json`` there (by an
atomic rename), so a stage either finished or will run again, and a later stage can trust what
it reads.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import yaml
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from elm_space import Family, SearchSpace
from elm_train import data, teacher
from elm_train import engine as dist
from elm_train.checkpoint import write_json_atomic
from elm_train.config import ConfigError, RunConfig, diff_configs
from elm_train.metrics import MetricsLog

CONFIG_FILE = "config.yaml"


class Run:
    def __init__(self, config: RunConfig, run_dir: Path) -> None:
        self.config = config
        self.dir = Path(run_dir)
        self.metrics = MetricsLog(self.dir / "metrics.jsonl", enabled=dist.rank() == 0)

    @classmethod
    def open(cls, config: RunConfig, run_dir: str | Path) -> Run:
        """Start a run, or continue one with the same config; a different config is refused.

        Under a launcher (several processes) the process group starts here, and only rank 0
        writes to the run directory.
        """
        if dist.is_launched():
            dist.init_distributed()
        run_dir = Path(run_dir)
        saved = run_dir / CONFIG_FILE
        if saved.is_file():
            old = RunConfig.model_validate(yaml.safe_load(saved.read_text()))
            changes = diff_configs(old, config)
            if changes:
                raise ConfigError(
                    f"{run_dir} was started with a different config; refusing to resume it. Differences:\n  "
                    + "\n  ".join(changes)
                    + "\nUse another --run-dir, or the original config."
                )
        elif dist.rank() == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            tmp = saved.with_name(CONFIG_FILE + ".tmp")
            tmp.write_text(config.to_yaml())
            tmp.rename(saved)
        dist.barrier()
        return cls(config, run_dir)

    def stage_dir(self, name: str) -> Path:
        path = self.dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def is_done(self, name: str) -> bool:
        return (self.dir / name / "done.json").is_file()

    def done_info(self, name: str) -> dict[str, Any]:
        path = self.dir / name / "done.json"
        if not path.is_file():
            raise ConfigError(
                f"stage {name!r} has not finished in {self.dir}; run it first (elm-train stage {name})"
            )
        return json.loads(path.read_text())

    def mark_done(self, name: str, info: dict[str, Any]) -> None:
        if dist.rank() == 0:
            write_json_atomic(self.stage_dir(name) / "done.json", info)
        dist.barrier()

    @property
    def causal(self) -> bool:
        return self.initial_space.backbone.family is Family.CAUSAL

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        name = self.config.teacher.tokenizer or self.config.teacher.name_or_path
        return teacher.load_tokenizer(name)

    @cached_property
    def initial_space(self) -> SearchSpace:
        vocab = len(self.tokenizer) if self.config.teacher.name_or_path else None
        return self.config.search_space(vocab_size=vocab)

    @cached_property
    def blocks(self) -> datasets.DatasetDict:
        name = self.config.teacher.tokenizer or self.config.teacher.name_or_path
        masked = self.config.search_space().backbone.family is Family.MASKED
        build = lambda: data.build_blocks(self.config.data, self.tokenizer, masked, self.stage_dir("data"), name)  # noqa: E731
        if dist.rank() == 0:
            blocks = build()
            dist.barrier()
            return blocks
        dist.barrier()  # rank 0 has written the cache; the others read it
        return build()

    @cached_property
    def teacher(self) -> PreTrainedModel:
        return teacher.load_teacher(self.config.teacher.name_or_path, causal=self.causal)
