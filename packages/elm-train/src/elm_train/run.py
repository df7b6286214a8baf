"""The run directory: the config it was started with, per-stage outputs and completion markers.

Each stage writes into ``<run_dir>/<stage>/`` and finishes by writing ``done.json`` there (by an
atomic rename), so a stage either finished or will run again, and a later stage can trust what
it reads.
"""

from __future__ import annotations

import json
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import yaml
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from elm_space import SearchSpace
from elm_train import data, teacher, tokenizer
from elm_train import engine as dist
from elm_train.checkpoint import write_json_atomic
from elm_train.config import ConfigError, RunConfig, diff_configs
from elm_train.kd import TeacherFeatures
from elm_train.metrics import MetricsLog

CONFIG_FILE = "config.yaml"
TOKENIZER_DIR = "tokenizer"
TEACHER_DIR = "teacher/model"
"""Where the teacher stage saves a stand-in teacher it trained."""


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
        return self.config.causal

    @property
    def tokenizer_name(self) -> str:
        """Names the tokenizer in the block cache's key."""
        cfg = self.config
        source = cfg.tokenizer_source
        if source == "bpe":
            return f"bpe:{cfg.tokenizer.vocab_size}:{cfg.tokenizer.min_frequency}"
        if source == "gpt2-files":
            return f"gpt2-files:{Path(str(cfg.tokenizer.files)).expanduser().resolve()}"
        return str(cfg.teacher.tokenizer or cfg.teacher.name_or_path)

    @property
    def tokenizer_dir(self) -> Path:
        """Where a tokenizer trained for this run lives."""
        return self.dir / TOKENIZER_DIR

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        cfg = self.config
        source = cfg.tokenizer_source
        if source == "gpt2-files":
            assert cfg.tokenizer.files is not None  # the config's validator says so
            return tokenizer.gpt2_from_files(cfg.tokenizer.files)
        if source == "teacher":
            return teacher.load_tokenizer(str(cfg.teacher.tokenizer or cfg.teacher.name_or_path))
        if not (self.tokenizer_dir / "tokenizer.json").is_file() and dist.rank() == 0:
            texts = data.load_corpus(cfg.data)["train"]
            trained = tokenizer.train_bpe(texts, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency)
            tmp = self.tokenizer_dir.with_name(TOKENIZER_DIR + ".tmp")
            if tmp.exists():  # left by a run killed while writing
                shutil.rmtree(tmp)
            trained.save_pretrained(tmp)
            tmp.rename(self.tokenizer_dir)
        dist.barrier()
        return AutoTokenizer.from_pretrained(self.tokenizer_dir)

    @cached_property
    def initial_space(self) -> SearchSpace:
        return self.config.search_space(vocab_size=len(self.tokenizer))

    @cached_property
    def blocks(self) -> datasets.DatasetDict:
        masked = not self.config.causal
        build = lambda: data.build_blocks(  # noqa: E731
            self.config.data, self.tokenizer, masked, self.stage_dir("data"), self.tokenizer_name
        )
        if dist.rank() == 0:
            blocks = build()
            dist.barrier()
            return blocks
        dist.barrier()  # rank 0 has written the cache; the others read it
        return build()

    @property
    def teacher_source(self) -> str:
        """The teacher's checkpoint: the configured one, or the stand-in the teacher stage trained."""
        if self.config.teacher.train is None:
            assert self.config.teacher.name_or_path is not None  # the config's validator says so
            return teacher.resolve(self.config.teacher.name_or_path)
        trained = self.dir / TEACHER_DIR
        if not (trained / "config.json").is_file():
            raise ConfigError(
                f"the stand-in teacher has not been trained in {self.dir} yet; run elm-train stage teacher"
            )
        return str(trained)

    @cached_property
    def teacher(self) -> PreTrainedModel:
        model = teacher.load_teacher(self.teacher_source, causal=self.causal)
        if self.causal and int(model.config.vocab_size) != len(self.tokenizer):
            raise ConfigError(
                f"the teacher's vocabulary has {model.config.vocab_size} entries but the tokenizer "
                f"({self.tokenizer_name}) has {len(self.tokenizer)}; logits distillation needs the same "
                "vocabulary: use tokenizer.source 'teacher'"
            )
        return model

    @cached_property
    def teacher_features(self) -> TeacherFeatures:
        """One set of feature taps on the teacher for the whole run (taps added per stage would
        pile up on the shared teacher and collect every feature several times)."""
        return TeacherFeatures(self.teacher)
