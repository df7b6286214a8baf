"""Task specs: validation of fields, spec files, and the predefined GLUE tasks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from elm_eval.errors import ElmEvalError
from elm_eval.task_data import load_task_data
from elm_eval.tasks import BUILTIN_TASKS, TaskSpec, get_task, load_task_spec


def _write_tsv(path: Path, rows: list[dict]) -> None:
    lines = ["\t".join(rows[0])] + ["\t".join(str(v) for v in row.values()) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_spec_validation_errors_name_the_field() -> None:
    source = {"kind": "files", "train": "a.tsv", "validation": "b.tsv"}
    base = {"name": "t", "source": source, "text_columns": ["s"], "label_column": "l"}
    with pytest.raises(ValidationError, match="regression task has num_labels 1"):
        TaskSpec(**base, task_type="regression", num_labels=2, metric="pearson_spearman")
    with pytest.raises(ValidationError, match="label_names has 3 names but num_labels is 2"):
        TaskSpec(**base, label_names=["a", "b", "c"])
    with pytest.raises(ValidationError, match="text_columns"):
        TaskSpec(**{**base, "text_columns": ["a", "b", "c"]})
    with pytest.raises(ValidationError, match="metric"):
        TaskSpec(**base, metric="bleu")


def test_spec_file_resolves_relative_paths(tmp_path: Path) -> None:
    rows = [{"sentence": "good", "label": "1"}, {"sentence": "bad", "label": "0"}]
    _write_tsv(tmp_path / "train.tsv", rows)
    _write_tsv(tmp_path / "dev.tsv", rows)
    (tmp_path / "task.yaml").write_text(
        "name: toy\nsource: {kind: files, train: train.tsv, validation: dev.tsv}\n"
        "text_columns: [sentence]\nlabel_column: label\n",
        encoding="utf-8",
    )
    assert load_task_data(load_task_spec(tmp_path / "task.yaml")).train.labels == [1, 0]
    (tmp_path / "bad.yaml").write_text("name: toy\nsource: {kind: files}\n", encoding="utf-8")
    with pytest.raises(
        ElmEvalError, match=r"bad\.yaml: invalid task spec: source\.files\.train: Field required"
    ):
        load_task_spec(tmp_path / "bad.yaml")
    with pytest.raises(ElmEvalError, match="not found"):
        load_task_spec(tmp_path / "none.yaml")


def test_glue_tasks_are_predefined_with_their_metrics() -> None:
    expected = {
        "cola": "matthews_correlation",
        "stsb": "pearson_spearman",
        "mrpc": "accuracy_f1",
        "qqp": "accuracy_f1",
        "sst2": "accuracy",
        "mnli": "accuracy",
        "qnli": "accuracy",
        "rte": "accuracy",
        "wnli": "accuracy",
    }
    assert {name: get_task(name).metric for name in expected} == expected
    assert get_task("SST-2") is BUILTIN_TASKS["sst2"] and get_task("STS_B").task_type == "regression"
    assert (
        get_task("mnli").num_labels == 3
        and get_task("mnli").source.splits["validation"] == "validation_matched"
    )
    assert get_task("mrpc").text_columns == ["sentence1", "sentence2"]
    with pytest.raises(ElmEvalError, match="unknown task 'glue-x'"):
        get_task("glue-x")
