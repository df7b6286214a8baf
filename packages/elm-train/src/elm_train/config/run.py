"""The whole run's config: every section, the plugins imported before it is validated, and the
checks that span sections (lengths against the space, tasks, the family, the multitask stage)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import field_validator, model_validator

import elm_eval
import elm_space
from elm_space import SearchSpace
from elm_train.config.base import ConfigError, Section
from elm_train.config.data import DataConfig, TokenizerConfig
from elm_train.config.evaluation import EvalStageConfig, MonitorConfig
from elm_train.config.search import SearchStageConfig
from elm_train.config.tasks import TaskStageConfig, canonical_task, task_key
from elm_train.config.training import (
    BaselineConfig,
    DeepSpeedConfig,
    HeadsStageConfig,
    MultitaskStageConfig,
    RetrainStageConfig,
    SupernetStageConfig,
    TeacherConfig,
)
from elm_train.models.settings import ModelSettings


def import_plugins(modules: list[str]) -> None:
    """Import each plugin module (it registers losses or searchers as it loads)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"plugins: cannot import {module!r}: {err}") from err


class RunConfig(Section):
    plugins: list[str] = []  # noqa: RUF012
    """Modules imported before the rest of the config is validated, e.g. one that calls
    ``elm_distill.register_loss`` or ``elm_search.register_searcher``."""
    name: str = "demo"
    seed: int = 42
    space: str | SearchSpace = "demo"
    """A preset name of elm-space, or a full space."""
    space_overrides: dict[str, Any] = {}  # noqa: RUF012
    """Backbone fields to override in the preset (``vocab_size`` is set from the tokenizer)."""
    model: ModelSettings = ModelSettings()
    """What every ELM model of the run shares beyond its architecture (dropout, norms, init)."""
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    supernet: SupernetStageConfig = SupernetStageConfig()
    multitask: MultitaskStageConfig = MultitaskStageConfig()
    search: SearchStageConfig = SearchStageConfig()
    heads: HeadsStageConfig = HeadsStageConfig()
    retrain: RetrainStageConfig = RetrainStageConfig()
    tasks: TaskStageConfig = TaskStageConfig()
    eval: EvalStageConfig = EvalStageConfig()
    baseline: BaselineConfig = BaselineConfig()
    monitor: MonitorConfig = MonitorConfig()
    """Live curves (TensorBoard, CSV, W&B) through DeepSpeed's monitor; off unless asked."""
    hub_mirrors: dict[str, Path] = {}  # noqa: RUF012
    """Local copies of hub repositories by hub id, e.g. ``{nyu-mll/glue: /data/hf/glue}``. Wherever
    the run would download that id (the corpus, the teacher and its tokenizer, a task's dataset, the
    GLUE test sets) it loads the directory instead, through the same calls (``datasets.load_dataset``
    and ``from_pretrained`` on a path). A ``git clone`` of the hub repository is such a copy."""

    @field_validator("hub_mirrors")
    @classmethod
    def _mirror_ids(cls, value: dict[str, Path]) -> dict[str, Path]:
        for hub_id in value:
            if not hub_id.strip() or hub_id != hub_id.strip() or hub_id.startswith(("/", ".", "~")):
                raise ValueError(
                    f"hub_mirrors: {hub_id!r} is not a hub id (the keys are ids, the values paths)"
                )
        return value

    def hub_source(self, name: str) -> str:
        """Where to load hub id ``name`` from: its local copy in ``hub_mirrors``, or the id itself."""
        mirror = self.hub_mirrors.get(name)
        return name if mirror is None else str(Path(mirror).expanduser())

    @model_validator(mode="before")
    @classmethod
    def _import_plugins_first(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("plugins"):
            plugins = data["plugins"]
            if not isinstance(plugins, list) or not all(isinstance(m, str) for m in plugins):
                raise ValueError(f"plugins must be a list of module names, got {plugins!r}")
            import_plugins(plugins)
        return data

    @model_validator(mode="after")
    def _space_known(self) -> Self:
        if isinstance(self.space, str) and self.space not in elm_space.PRESETS:
            raise ValueError(
                f"space={self.space!r} is not an elm-space preset; known: {', '.join(elm_space.PRESETS)}"
            )
        return self

    @model_validator(mode="after")
    def _fits_the_space(self) -> Self:
        """Lengths the models must take, and task names, checked before anything trains."""
        try:
            space = self.search_space()
        except (ValueError, TypeError) as err:
            raise ValueError(f"space_overrides: {err}") from None
        positions = space.backbone.max_positions
        lengths = {
            "data.block_size": self.data.block_size,
            "tasks.max_seq_length": self.tasks.max_seq_length if self.task_names else 0,
            "eval.latency_seq_len": self.eval.latency_seq_len if self.eval.latency else 0,
        }
        for name, length in lengths.items():
            if length > positions:
                raise ValueError(
                    f"{name}={length} is longer than the models' {positions} positions "
                    "(space max_positions; raise it in space_overrides, or shorten this)"
                )
        for task in self.task_names:
            try:
                canonical_task(task)
            except elm_eval.ElmEvalError as err:
                raise ValueError(f"tasks.tasks: {err}") from None
        qa_length = self.tasks.qa.max_seq_length
        if any(elm_eval.is_qa_task(task) for task in self.task_names) and qa_length > positions:
            raise ValueError(
                f"tasks.qa.max_seq_length={qa_length} is longer than the models' {positions} positions "
                "(space max_positions; raise it in space_overrides, or shorten this)"
            )
        return self

    @model_validator(mode="after")
    def _fits_the_family(self) -> Self:
        if self.tokenizer.source == "teacher" and self.teacher.train is not None:
            raise ValueError(
                "tokenizer.source 'teacher' needs a teacher checkpoint, but teacher.train trains one "
                "after tokenising; use tokenizer.source 'bpe' or 'gpt2-files'"
            )
        if self.causal:
            return self
        masked_only = {
            "teacher.train (a GPT-2-style causal teacher)": self.teacher.train is not None,
            "supernet.kd.logits_weight": bool(self.supernet.kd.logits_weight),
            "retrain.kd.logits_weight": bool(self.retrain.kd.logits_weight),
            "supernet.lm_weight": bool(self.supernet.lm_weight),
        }
        wrong = [name for name, used in masked_only.items() if used]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} apply to the causal family only; this space is masked")
        return self

    @model_validator(mode="after")
    def _multitask_consistent(self) -> Self:
        needs = {
            "search.fitness 'task'": self.search.fitness == "task",
            "retrain.init 'multitask'": self.retrain.init == "multitask",
        }
        wrong = [name for name, used in needs.items() if used]
        if wrong and not self.multitask.enabled:
            raise ValueError(f"{', '.join(wrong)} need(s) the multitask stage: set multitask.enabled")
        if self.search.fitness == "task" and self.search.fitness_tasks is not None:
            if not self.search.fitness_tasks:
                raise ValueError("search.fitness_tasks is empty: name a task, or null for all of them")
            known = {task_key(t): t for t in self.multitask_task_names}
            for task in self.search.fitness_tasks:
                if task_key(task) not in known:
                    raise ValueError(
                        f"search.fitness_tasks: {task!r} is not a multitask task; the task fitness "
                        f"scores only those: {', '.join(self.multitask_task_names)}"
                    )
        if self.multitask.enabled:
            if self.causal:
                raise ValueError("multitask.enabled: multi-task fine-tuning is for the masked family")
            if not self.multitask_task_names:
                raise ValueError("multitask.enabled needs tasks (multitask.tasks or tasks.tasks)")
            for task in self.multitask_task_names:
                try:
                    elm_eval.get_task(task)
                except elm_eval.ElmEvalError as err:
                    raise ValueError(f"multitask.tasks: {err}") from None
        return self

    @model_validator(mode="after")
    def _baseline_exists(self) -> Self:
        """The all-BERT baseline needs a BERT candidate in every layer (found out before training,
        not when the retrain stage builds it)."""
        if self.baseline.enabled:
            space = self.search_space()
            missing = [
                i for i, layer in enumerate(space.layers) if all(c.kind.value != "bert" for c in layer)
            ]
            if missing:
                raise ValueError(
                    f"baseline.enabled: layer(s) {missing} of space {space.name!r} have no BERT block, so "
                    "no all-BERT baseline exists; set baseline.enabled: false"
                )
        return self

    @property
    def measures_perplexity(self) -> bool:
        """Whether the evaluate stage scores the students' LM perplexity: ``eval.lm``, and a loss
        trained their LM head (the causal family's next-token loss; for the masked family only
        retraining's masked-LM loss: its supernet is distilled on hidden states alone)."""
        retrain = self.retrain
        trained = self.causal or (retrain.enabled and retrain.lm_loss and retrain.lm_weight > 0)
        return self.eval.lm and trained

    @property
    def fitness_task_names(self) -> list[str]:
        """The multitask tasks (as ``multitask_task_names`` spells them) that the ``task`` fitness
        averages."""
        chosen = self.search.fitness_tasks
        if chosen is None:
            return self.multitask_task_names
        wanted = {task_key(t) for t in chosen}
        return [t for t in self.multitask_task_names if task_key(t) in wanted]

    @property
    def multitask_task_names(self) -> list[str]:
        if self.multitask.tasks is not None:
            return list(self.multitask.tasks)
        return [name for name in self.task_names if not elm_eval.is_qa_task(name)]  # GLUE-style only

    @property
    def causal(self) -> bool:
        return self.search_space().backbone.family is elm_space.Family.CAUSAL

    @property
    def tokenizer_source(self) -> Literal["teacher", "bpe", "gpt2-files"]:
        if self.tokenizer.source == "auto":
            return "bpe" if self.teacher.train is not None else "teacher"
        return self.tokenizer.source

    @property
    def task_names(self) -> list[str]:
        if self.tasks.tasks is not None:
            return list(self.tasks.tasks)
        return [] if self.causal else ["tweet-sentiment"]

    def search_space(self, vocab_size: int | None = None) -> SearchSpace:
        """The initial space, with the tokenizer's vocabulary size when given."""
        overrides = dict(self.space_overrides)
        if vocab_size is not None:
            overrides["vocab_size"] = vocab_size
        if isinstance(self.space, SearchSpace):
            backbone = elm_space.revalidated(self.space.backbone, "space_overrides", **overrides)
            return elm_space.revalidated(self.space, "space", backbone=backbone)
        return elm_space.preset(self.space, **overrides)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
