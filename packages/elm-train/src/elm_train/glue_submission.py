"""GLUE test-set predictions in the layout the GLUE server (gluebenchmark.com) takes.

One TSV per file of a submission, named as the server expects (``CoLA.tsv``, ``SST-2.tsv``,
``MRPC.tsv``, ``STS-B.tsv``, ``QQP.tsv``, ``MNLI-m.tsv``, ``MNLI-mm.tsv``, ``QNLI.tsv``, ``RTE.tsv``,
``WNLI.tsv``, ``AX.tsv``), with a header row and one ``index<TAB>prediction`` row per test example
in the test file's order. Predictions are written as the server reads them: class names for the
inference tasks (MNLI, QNLI, RTE and AX, which the MNLI model predicts), 0/1 for CoLA, SST-2,
MRPC, QQP and WNLI, and for STS-B the score clipped to [0, 5]. The MNLI model predicts three files:
the matched and mismatched test sets and the diagnostic set AX (METHOD.md section 4, step 5c).

A task's test rows come from elm-eval, whole (the example caps of a CPU run do not apply: the
server needs every row). elm-eval's GLUE tasks hold one test split each, so the mismatched MNLI
test set and AX are read here from the same hub dataset (``nyu-mll/glue``, configs ``mnli`` and
``ax``); a task from local files has only its own test split. Where rows cannot be had (offline,
no test split), the file is not written and the reason is returned instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

import elm_eval
from elm_eval import HubSource, TaskData, TaskSpec, TaskSplit
from elm_train.runtime.errors import ElmTrainError
from elm_train.runtime.fsio import write_text_atomic
from elm_train.training.task_distill import encode_split, predict


class SubmissionError(ElmTrainError):
    """Predictions that cannot be written in the GLUE server's format."""


GLUE_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "cola": ("unacceptable", "acceptable"),
    "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"),
    "qqp": ("not_duplicate", "duplicate"),
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "wnli": ("not_entailment", "entailment"),
}
"""GLUE's class names in id order (the hub dataset ``nyu-mll/glue``'s); ``stsb`` is a regression.
A local copy whose labels are names has them mapped to these ids before writing."""


@dataclass(frozen=True)
class GlueFile:
    """One file of a submission and where its rows are."""

    name: str
    """The file's stem on the server: ``MNLI-mm`` is written as ``MNLI-mm.tsv``."""
    task: str
    """The GLUE task whose model predicts it (``mnli`` for ``AX``)."""
    hub_config: str
    hub_split: str
    """Where the rows are in ``nyu-mll/glue``; the task's own test split is read through elm-eval."""
    names: bool
    """Whether the server reads class names (True) or class ids (False); STS-B writes scores."""

    @property
    def filename(self) -> str:
        return f"{self.name}.tsv"


GLUE_FILES: tuple[GlueFile, ...] = (
    GlueFile("CoLA", "cola", "cola", "test", names=False),
    GlueFile("SST-2", "sst2", "sst2", "test", names=False),
    GlueFile("MRPC", "mrpc", "mrpc", "test", names=False),
    GlueFile("STS-B", "stsb", "stsb", "test", names=False),
    GlueFile("QQP", "qqp", "qqp", "test", names=False),
    GlueFile("MNLI-m", "mnli", "mnli", "test_matched", names=True),
    GlueFile("MNLI-mm", "mnli", "mnli", "test_mismatched", names=True),
    GlueFile("QNLI", "qnli", "qnli", "test", names=True),
    GlueFile("RTE", "rte", "rte", "test", names=True),
    GlueFile("WNLI", "wnli", "wnli", "test", names=False),
    GlueFile("AX", "mnli", "ax", "test", names=True),
)
"""Every file the GLUE server takes, in the order of its submission page."""

STSB_RANGE = (0.0, 5.0)


def glue_task(spec: TaskSpec | str) -> str | None:
    """The GLUE task a task spec (or an elm-eval task name) is, or None: GLUE tasks are named as
    elm-eval names them (``sst2``, ``SST-2`` ...)."""
    name = spec if isinstance(spec, str) else spec.name
    try:
        canonical = elm_eval.get_task(name).name
    except elm_eval.ElmEvalError:
        return None
    return canonical if any(f.task == canonical for f in GLUE_FILES) else None


def glue_files(task: str) -> list[GlueFile]:
    """The files a GLUE task's model predicts (three for MNLI: matched, mismatched and AX)."""
    return [f for f in GLUE_FILES if f.task == task]


def server_predictions(
    file: GlueFile, predictions: Sequence[float], label_names: Sequence[str] | None
) -> list[str]:
    """Predictions as the server reads them. ``predictions`` are the model's class ids (values
    for STS-B); ``label_names`` are the model's classes in id order when its training labels were
    names (elm-eval's ``TaskData.label_names``), None when they were GLUE's ids."""
    if file.task == "stsb":
        low, high = STSB_RANGE
        return [f"{min(high, max(low, float(p))):.3f}" for p in predictions]
    classes = GLUE_CLASS_NAMES[file.task]
    out = []
    for p in predictions:
        glue_id = _glue_id(file, int(p), label_names)
        out.append(classes[glue_id] if file.names else str(glue_id))
    return out


def _glue_id(file: GlueFile, class_id: int, label_names: Sequence[str] | None) -> int:
    classes = GLUE_CLASS_NAMES[file.task]
    if label_names is None:
        glue_id = class_id
    else:
        name = str(label_names[class_id]).strip()
        if name in classes:
            glue_id = classes.index(name)
        elif name.isdigit():
            glue_id = int(name)
        else:
            raise SubmissionError(
                f"{file.filename}: the model's class {name!r} is not one of GLUE {file.task}'s {list(classes)}"
            )
    if not 0 <= glue_id < len(classes):
        raise SubmissionError(
            f"{file.filename}: class id {glue_id} is outside GLUE {file.task}'s {list(classes)}"
        )
    return glue_id


def write_file(path: Path, predictions: Sequence[str]) -> None:
    """``index<TAB>prediction`` with a header row, written atomically."""
    rows = ["index\tprediction", *(f"{i}\t{p}" for i, p in enumerate(predictions))]
    write_text_atomic(path, "\n".join(rows) + "\n")


@dataclass
class GlueTestSet:
    """The test rows a GLUE task's model predicts, by file stem, and the model's classes."""

    task: str
    label_names: list[str] | None
    """The model's classes in id order when its training labels were names, else None."""
    rows: dict[str, TaskSplit] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    """File stem -> why its rows could not be had."""


def glue_test_set(spec: TaskSpec, data: TaskData | None = None) -> GlueTestSet | None:
    """The whole test rows of every file a GLUE task predicts; None for a task that is not GLUE.

    ``data`` (the task as loaded for training) is reused when it holds the whole test split.
    """
    task = glue_task(spec)
    if task is None:
        return None
    if data is None or spec.max_test_examples is not None:
        data = elm_eval.load_task_data(spec.model_copy(update={"max_test_examples": None}))
    found = GlueTestSet(task, data.label_names)
    own, *extra = glue_files(task)
    if data.test is None:
        found.missing[own.name] = (
            f"task {spec.name!r} has no test split here (offline, or none in its source)"
        )
    else:
        found.rows[own.name] = data.test
    for file in extra:
        if not isinstance(spec.source, HubSource):
            found.missing[file.name] = (
                f"task {spec.name!r} is read from local files, which hold no {file.name} rows"
            )
            continue
        rows = _hub_rows(spec.source.dataset, file, spec.text_columns)
        if isinstance(rows, str):
            found.missing[file.name] = rows
        else:
            found.rows[file.name] = rows
    return found


def _hub_rows(dataset: str, file: GlueFile, columns: list[str]) -> TaskSplit | str:
    """A test split of ``dataset`` (``file``'s config and split) with its labels hidden, or why not."""
    import datasets  # the online route only

    where = f"hub dataset {dataset!r} ({file.hub_config}) split {file.hub_split!r}"
    try:
        split = datasets.load_dataset(dataset, file.hub_config, split=file.hub_split)
    except Exception as exc:  # datasets raises many types (connection, offline mode, missing split)
        return f"could not load {where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    absent = [c for c in columns if c not in split.column_names]
    if absent:
        return f"{where} has no column(s) {absent}; its columns are {split.column_names}"
    texts = [["" if v is None else str(v) for v in split[c]] for c in columns]
    return TaskSplit(texts[0], texts[1] if len(texts) == 2 else None, None)


def write_predictions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    test_set: GlueTestSet,
    out_dir: Path,
    *,
    max_length: int,
    pad_id: int,
) -> dict[str, Any]:
    """Predict every available file of ``test_set`` with ``model`` and write it into ``out_dir``;
    returns ``{"files": {stem: rows}, "missing": {stem: why}}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    for file in glue_files(test_set.task):
        rows = test_set.rows.get(file.name)
        if rows is None:
            continue
        encoded = encode_split(tokenizer, rows, max_length)
        predictions = predict(model, encoded, file.task == "stsb", pad_id)
        write_file(out_dir / file.filename, server_predictions(file, predictions, test_set.label_names))
        written[file.name] = len(predictions)
    return {"files": written, "missing": dict(test_set.missing)}
