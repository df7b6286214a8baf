"""Extractive question-answering tasks (SQuAD v1.1 and v2.0): where the data is, and reading it
into checked lists with errors that name the file, row and column.

A QA task is its own spec, not a :class:`~elm_eval.tasks.TaskSpec`: its rows are (id, title,
context, question, answers{text, answer_start}) rather than texts and a class label, and every later
step (features per document window, span labels, post-processing, the metric) differs too. Two are
predefined with their hub ids, ``squad`` (``rajpurkar/squad``) and ``squad_v2``
(``rajpurkar/squad_v2``); local JSON-lines or JSON files with the same columns (or the official
SQuAD JSON, ``{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``) work offline, and
:func:`elm_eval.with_hub_mirrors` points a hub spec at a local copy in the hub's layout.

Every row of every split is checked before anything trains: the columns are there, the context and
question are not empty, and each gold answer is the text found at its ``answer_start`` in the
context (a SQuAD file whose offsets went wrong, e.g. through another encoding, is caught here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from elm_eval.errors import ElmEvalError, describe_validation_error, one_line
from elm_eval.files import check_encoding, read_text
from elm_eval.task_data import _kept, _RawSplit, _read_hub, jsonl_split
from elm_eval.tasks import HubSource, read_spec_file

QA_COLUMNS = ("id", "context", "question", "answers")
"""Columns every row needs (``title`` is optional)."""


class QAFileSource(BaseModel):
    """Local files, one per split: JSON lines (a row per line), a JSON list of rows, or the official
    SQuAD JSON. Relative paths are taken from ``base_dir`` (the spec file's folder)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["files"] = "files"
    train: Path
    validation: Path
    encoding: Annotated[str, AfterValidator(check_encoding)] = "utf-8"
    base_dir: Path | None = None

    def path(self, role: str) -> Path:
        raw: Path = getattr(self, role)
        return raw if raw.is_absolute() or self.base_dir is None else self.base_dir / raw


class QATaskSpec(BaseModel):
    """An extractive QA task. ``version`` ``v2`` allows unanswerable questions (empty answers)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["qa"] = "qa"
    name: str
    source: Annotated[HubSource | QAFileSource, Field(discriminator="kind")]
    version: Literal["v1", "v2"] = "v1"
    max_train_examples: int | None = Field(None, ge=1)
    max_validation_examples: int | None = Field(None, ge=1)
    subset_seed: int = 0

    @property
    def metric(self) -> Literal["squad", "squad_v2"]:
        return "squad_v2" if self.version == "v2" else "squad"

    def capped(self, train: int | None = None, validation: int | None = None) -> QATaskSpec:
        """A copy with the split caps replaced where given (validated like a new spec)."""
        updates = {
            key: value
            for key, value in {"max_train_examples": train, "max_validation_examples": validation}.items()
            if value is not None
        }
        try:
            return QATaskSpec.model_validate(self.model_dump() | updates)
        except ValidationError as exc:
            raise ElmEvalError(f"task {self.name!r}: {describe_validation_error(exc)}") from None


def _squad(name: str, dataset: str, version: Literal["v1", "v2"]) -> QATaskSpec:
    splits = {"train": "train", "validation": "validation"}
    return QATaskSpec(name=name, source=HubSource(dataset=dataset, splits=splits), version=version)


QA_TASKS: dict[str, QATaskSpec] = {
    "squad": _squad("squad", "rajpurkar/squad", "v1"),
    "squad_v2": _squad("squad_v2", "rajpurkar/squad_v2", "v2"),
}
"""The predefined QA tasks (hub ids; offline through :func:`elm_eval.with_hub_mirrors`)."""


def _qa_key(name: str) -> str:
    key = name.lower().replace("-", "_").replace(".", "_")
    return {"squad_v1": "squad", "squad_v1_1": "squad", "squad2": "squad_v2", "squad_v2_0": "squad_v2"}.get(
        key, key
    )


def is_qa_task(name: str) -> bool:
    """Whether ``name`` is a predefined QA task (``squad``, ``squad_v2``; ``SQuAD-v2`` too)."""
    return _qa_key(name) in QA_TASKS


def get_qa_task(name: str) -> QATaskSpec:
    """The predefined QA task ``name``."""
    key = _qa_key(name)
    if key not in QA_TASKS:
        raise ElmEvalError(f"unknown question-answering task {name!r}; predefined: {', '.join(QA_TASKS)}")
    return QA_TASKS[key]


def load_qa_task_spec(path: str | PathLike[str]) -> QATaskSpec:
    """A QATaskSpec from YAML or JSON; relative data paths are taken from the spec file's folder."""
    return read_spec_file(Path(path), QATaskSpec)


@dataclass(frozen=True)
class QASplit:
    """One split as parallel lists; ``answers[i]`` is ``{"text": [...], "answer_start": [...]}``
    (empty lists: unanswerable); ``where[i]`` says where row i came from, for error messages."""

    ids: list[str]
    titles: list[str]
    contexts: list[str]
    questions: list[str]
    answers: list[dict[str, list]]
    where: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def references(self) -> list[dict[str, Any]]:
        """The rows in the SQuAD metrics' reference format."""
        return [{"id": i, "answers": a} for i, a in zip(self.ids, self.answers, strict=True)]


@dataclass(frozen=True)
class QAData:
    spec: QATaskSpec
    train: QASplit
    validation: QASplit


def _official_rows(document: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """Rows of the official SQuAD JSON layout (data -> paragraphs -> qas)."""
    rows: list[dict[str, Any]] = []
    try:
        for article in document["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                    rows.append(
                        {
                            "id": qa["id"],
                            "title": article.get("title", ""),
                            "context": paragraph["context"],
                            "question": qa["question"],
                            "answers": {
                                "text": [a["text"] for a in answers],
                                "answer_start": [a["answer_start"] for a in answers],
                            },
                        }
                    )
    except (KeyError, TypeError) as exc:
        raise ElmEvalError(
            f"{path}: not the SQuAD JSON layout (data/paragraphs/qas): missing {exc}"
        ) from None
    return rows


def _read_file(path: Path, source: QAFileSource) -> _RawSplit:
    text = read_text(path, "data file", source.encoding, f"; set source.encoding (now {source.encoding!r})")
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" and stripped[:1] in ("{", "["):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            if stripped[:1] == "[":
                raise ElmEvalError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
            document = None  # a JSON-lines file named .json
        except RecursionError:
            raise ElmEvalError(f"{path}: JSON nested too deeply") from None
        if isinstance(document, dict) and "data" in document:
            rows = _official_rows(document, path)
            return _RawSplit(str(path), list(dict.fromkeys(k for r in rows for k in r)), rows, None)
        if isinstance(document, list):
            if not all(isinstance(row, dict) for row in document):
                raise ElmEvalError(f"{path}: a JSON list of rows must hold objects")
            return _RawSplit(str(path), list(dict.fromkeys(k for r in document for k in r)), document, None)
    return jsonl_split(text, path)


def _check_answers(value: Any, context: str, where: str, allow_none: bool) -> dict[str, list]:
    if not isinstance(value, dict) or not {"text", "answer_start"} <= set(value):
        raise ElmEvalError(f"{where}: 'answers' must be an object with 'text' and 'answer_start' lists")
    texts, starts = value["text"], value["answer_start"]
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
        raise ElmEvalError(
            f"{where}: 'answers' needs 'text' and 'answer_start' as lists of one length (got {texts!r}, {starts!r})"
        )
    if not texts and not allow_none:
        raise ElmEvalError(
            f"{where}: 'answers' is empty; unanswerable questions belong to a v2 task (version: v2, squad_v2)"
        )
    for k, (text, start) in enumerate(zip(texts, starts, strict=True)):
        if not isinstance(text, str) or not text.strip():
            raise ElmEvalError(f"{where}: answers.text[{k}] is not a non-empty string (got {text!r})")
        if isinstance(start, bool) or not isinstance(start, int):
            raise ElmEvalError(f"{where}: answers.answer_start[{k}] is not an integer (got {start!r})")
        found = context[start : start + len(text)] if start >= 0 else ""
        if found != text:
            raise ElmEvalError(
                f"{where}: answer {one_line(text, 60)!r} at answer_start {start} is outside the context "
                f"(the context there reads {one_line(found, 60)!r}; it has {len(context)} characters)"
            )
    return {"text": list(texts), "answer_start": list(starts)}


def _check_split(raw: _RawSplit, spec: QATaskSpec, role: str) -> QASplit:
    missing = [column for column in QA_COLUMNS if column not in raw.columns]
    if missing:
        raise ElmEvalError(
            f"unknown column {missing[0]!r} in {raw.where}: a QA split needs columns "
            f"{list(QA_COLUMNS)} (and optionally 'title'); its columns are {raw.columns}"
        )
    if not raw.rows:
        raise ElmEvalError(f"the {role} split of task {spec.name!r} ({raw.where}) is empty")
    out: dict[str, list] = {
        "ids": [],
        "titles": [],
        "contexts": [],
        "questions": [],
        "answers": [],
        "where": [],
    }
    seen: dict[str, str] = {}
    for i, row in enumerate(raw.rows):
        where = raw.at(i)
        for column in QA_COLUMNS:
            if column not in row:
                raise ElmEvalError(f"{where}: no {column!r} field (the row has {sorted(row)})")
        for column in ("context", "question"):
            if not isinstance(row[column], str):
                raise ElmEvalError(f"{where}: {column!r} is not text (got {type(row[column]).__name__})")
        if not row["context"].strip():
            raise ElmEvalError(f"{where}: the context is empty")
        if not row["question"].strip():
            raise ElmEvalError(f"{where}: the question is empty")
        qid = str(row["id"])
        if qid in seen:
            raise ElmEvalError(
                f"{where}: id {qid!r} is used twice (first at {seen[qid]}); scores are kept by id"
            )
        seen[qid] = where
        answers = _check_answers(row["answers"], row["context"], where, allow_none=spec.version == "v2")
        out["ids"].append(qid)
        out["titles"].append(str(row.get("title") or ""))
        out["contexts"].append(row["context"])
        out["questions"].append(row["question"])
        out["answers"].append(answers)
        out["where"].append(where)
    return QASplit(**out)


def _subset(split: QASplit, keep: list[int]) -> QASplit:
    return QASplit(
        **{field: [getattr(split, field)[i] for i in keep] for field in split.__dataclass_fields__}
    )


def load_qa_data(spec: QATaskSpec) -> QAData:
    """Read and check every row of the train and validation splits, then apply the caps (a seeded
    subset), so whether a file is accepted never depends on the caps."""
    splits: dict[str, QASplit] = {}
    for role, cap in (("train", spec.max_train_examples), ("validation", spec.max_validation_examples)):
        source = spec.source
        if isinstance(source, HubSource):
            raw = _read_hub(source, role)  # type: ignore[arg-type]
            if raw is None:
                raise ElmEvalError(f"task {spec.name!r} has no {role} split in {source.dataset!r}")
        else:
            raw = _read_file(source.path(role), source)
        split = _check_split(raw, spec, role)
        splits[role] = _subset(split, _kept(len(split), cap, spec.subset_seed))
    return QAData(spec=spec, train=splits["train"], validation=splits["validation"])
