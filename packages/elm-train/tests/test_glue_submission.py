"""GLUE test-set predictions in the GLUE server's layout: file names, rows, label vocabularies,
MNLI's three files, and the tasks stage writing them for each student (hub data faked locally)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import elm_eval
from elm_eval import FileSource, HubSource, TaskSpec
from elm_train import glue_submission
from elm_train.config import RunConfig, merge_configs
from elm_train.glue_submission import (
    GLUE_FILES,
    SubmissionError,
    glue_files,
    glue_task,
    glue_test_set,
    server_predictions,
    write_predictions,
)
from elm_train.pipeline import Run, run_all
from elm_train.presets import preset

WORDS = [
    "the",
    "market",
    "stock",
    "price",
    "rose",
    "fell",
    "company",
    "said",
    "year",
    "share",
    "new",
    "million",
    "bank",
    "trade",
]


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))


def file(name: str) -> glue_submission.GlueFile:
    return next(f for f in GLUE_FILES if f.name == name)


# --- formats ------------------------------------------------------------------------------------------


def test_every_server_file_and_which_model_predicts_it():
    assert [f.filename for f in GLUE_FILES] == [
        "CoLA.tsv",
        "SST-2.tsv",
        "MRPC.tsv",
        "STS-B.tsv",
        "QQP.tsv",
        "MNLI-m.tsv",
        "MNLI-mm.tsv",
        "QNLI.tsv",
        "RTE.tsv",
        "WNLI.tsv",
        "AX.tsv",
    ]
    assert [f.name for f in glue_files("mnli")] == ["MNLI-m", "MNLI-mm", "AX"]
    assert {f.task for f in GLUE_FILES} == set(elm_eval.tasks.GLUE_TASK_NAMES)
    assert glue_task("SST-2") == "sst2" and glue_task(elm_eval.get_task("stsb")) == "stsb"
    assert glue_task("tweet-sentiment") is None and glue_task("my-own") is None


def test_predictions_in_the_servers_vocabulary():
    # GLUE's own class ids (hub data): names for the inference tasks, ids for the others
    assert server_predictions(file("MNLI-m"), [0, 1, 2], None) == ["entailment", "neutral", "contradiction"]
    assert server_predictions(file("AX"), [2, 0], None) == ["contradiction", "entailment"]
    assert server_predictions(file("RTE"), [0, 1], None) == ["entailment", "not_entailment"]
    assert server_predictions(file("QNLI"), [1, 0], None) == ["not_entailment", "entailment"]
    assert server_predictions(file("CoLA"), [1, 0], None) == ["1", "0"]
    assert server_predictions(file("WNLI"), [1], None) == ["1"]
    # a local copy with named labels: elm-eval numbers the names in sorted order, GLUE does not
    local_mnli = ["contradiction", "entailment", "neutral"]
    assert server_predictions(file("MNLI-mm"), [0, 1, 2], local_mnli) == [
        "contradiction",
        "entailment",
        "neutral",
    ]
    assert server_predictions(file("SST-2"), [0, 1], ["negative", "positive"]) == ["0", "1"]
    assert server_predictions(file("CoLA"), [0, 1], ["acceptable", "unacceptable"]) == ["1", "0"]
    # STS-B: scores clipped to the scale
    assert server_predictions(file("STS-B"), [-0.5, 2.25, 7.0], None) == ["0.000", "2.250", "5.000"]
    with pytest.raises(SubmissionError, match="'maybe' is not one of GLUE rte's"):
        server_predictions(file("RTE"), [0], ["maybe", "yes"])
    with pytest.raises(SubmissionError, match="class id 3 is outside"):
        server_predictions(file("RTE"), [3], None)


# --- local GLUE-shaped tasks ------------------------------------------------------------------------


def write_tsv(path: Path, columns: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join("\t".join(map(str, r)) for r in [columns, *rows]) + "\n")
    return path


def local_task(
    tmp_path: Path, name: str, labels: list[object], pair: bool, regression: bool = False
) -> TaskSpec:
    rng = random.Random(name)
    columns = ["sentence1", "sentence2", "label"] if pair else ["sentence", "label"]

    def rows(n: int, hidden: bool) -> list[list[object]]:
        texts = lambda: [sentence(rng) for _ in range(2 if pair else 1)]  # noqa: E731
        return [[*texts(), "" if hidden else labels[i % len(labels)]] for i in range(n)]  # GLUE hides them

    folder = tmp_path / name
    folder.mkdir()
    source = FileSource(
        train=write_tsv(folder / "train.tsv", columns, rows(12, False)),
        validation=write_tsv(folder / "dev.tsv", columns, rows(6, False)),
        test=write_tsv(folder / "test.tsv", columns, rows(9, True)),
    )
    return TaskSpec(
        name=name,
        source=source,
        text_columns=columns[:-1],
        label_column="label",
        task_type="regression" if regression else "classification",
        num_labels=1 if regression else len(set(labels)),
        metric="pearson_spearman" if regression else "accuracy",
        max_test_examples=4,  # a CPU run's cap; the submission still predicts every test row
    )


def read_submission(path: Path) -> list[tuple[int, str]]:
    header, *rows = path.read_text().splitlines()
    assert header == "index\tprediction"
    return [(int(i), p) for i, p in (row.split("\t") for row in rows)]


@pytest.mark.parametrize(
    ("name", "labels", "pair", "vocabulary"),
    [
        ("rte", ["entailment", "not_entailment"], True, {"entailment", "not_entailment"}),
        ("cola", [0, 1], False, {"0", "1"}),
        ("sst2", ["positive", "negative"], False, {"0", "1"}),
        ("stsb", [0.5, 3.2, 4.8], True, None),
    ],
)
def test_a_local_glue_task_writes_its_server_file(tmp_path, tiny_teacher_dir, name, labels, pair, vocabulary):
    spec = local_task(tmp_path, name, labels, pair, regression=name == "stsb")
    test_set = glue_test_set(spec)
    assert test_set is not None and test_set.task == name and not test_set.missing
    assert len(test_set.rows[file_name(name)]) == 9  # uncapped
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir, num_labels=spec.num_labels)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    out = tmp_path / "submission"
    record = write_predictions(model, tokenizer, test_set, out, max_length=32, pad_id=0)
    assert record == {"files": {file_name(name): 9}, "missing": {}}
    assert [p.name for p in out.iterdir()] == [f"{file_name(name)}.tsv"]
    rows = read_submission(out / f"{file_name(name)}.tsv")
    assert [i for i, _ in rows] == list(range(9))
    if vocabulary is None:
        assert all(0.0 <= float(p) <= 5.0 for _, p in rows)
    else:
        assert {p for _, p in rows} <= vocabulary


def file_name(task: str) -> str:
    return glue_files(task)[0].name


def test_local_mnli_has_no_mismatched_or_diagnostic_rows(tmp_path):
    spec = local_task(tmp_path, "mnli", ["entailment", "neutral", "contradiction"], True)
    test_set = glue_test_set(spec)
    assert list(test_set.rows) == ["MNLI-m"]
    assert set(test_set.missing) == {"MNLI-mm", "AX"}
    assert "read from local files" in test_set.missing["AX"]
    assert test_set.label_names == ["contradiction", "entailment", "neutral"]  # elm-eval's order
    assert glue_test_set(elm_eval.get_task("tweet-sentiment").capped(train=10)) is None


# --- the hub's GLUE, faked offline --------------------------------------------------------------------

HUB_SIZES = {"train": 64, "validation": 16, "validation_matched": 16, "test": 10, "test_matched": 10}
HUB_SIZES |= {"test_mismatched": 11}
AX_SIZE = 7
COLUMNS = {
    "mnli": ("premise", "hypothesis"),
    "ax": ("premise", "hypothesis"),
    "rte": ("sentence1", "sentence2"),
}
CLASSES = {"mnli": 3, "ax": 3, "rte": 2}


def fake_load_dataset(path: str, name: str | None = None, split: str | None = None, **_: object):
    """``nyu-mll/glue`` as the hub serves it (class ids, test labels -1), built locally."""
    assert path == "nyu-mll/glue" and name in COLUMNS, (path, name)
    if (name == "ax" and split != "test") or split not in HUB_SIZES:
        raise ValueError(f"no split {split!r} in {name}")
    rng = random.Random(f"{name}:{split}")
    n = AX_SIZE if name == "ax" else HUB_SIZES[split]
    a, b = COLUMNS[name]
    hidden = split.startswith("test")
    return datasets.Dataset.from_dict(
        {
            a: [sentence(rng) for _ in range(n)],
            b: [sentence(rng) for _ in range(n)],
            "label": [-1 if hidden else rng.randrange(CLASSES[name]) for _ in range(n)],
            "idx": list(range(n)),
        }
    )


def test_mnli_from_the_hub_writes_matched_mismatched_and_ax(tmp_path, tiny_teacher_dir, monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    spec = elm_eval.get_task("mnli").capped(train=20, validation=8, test=3)
    assert isinstance(spec.source, HubSource)
    test_set = glue_test_set(spec)
    assert {k: len(v) for k, v in test_set.rows.items()} == {"MNLI-m": 10, "MNLI-mm": 11, "AX": AX_SIZE}
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir, num_labels=3)
    record = write_predictions(
        model, AutoTokenizer.from_pretrained(tiny_teacher_dir), test_set, tmp_path, max_length=32, pad_id=0
    )
    assert record["files"] == {"MNLI-m": 10, "MNLI-mm": 11, "AX": AX_SIZE}
    for stem, n in record["files"].items():
        rows = read_submission(tmp_path / f"{stem}.tsv")
        assert [i for i, _ in rows] == list(range(n))
        assert {p for _, p in rows} <= {"entailment", "neutral", "contradiction"}


def test_offline_hub_leaves_reasons_not_files(tmp_path, monkeypatch):
    def offline(path, name=None, split=None, **_):
        if split and split.startswith("test"):
            raise ConnectionError("offline")
        return fake_load_dataset(path, name, split)

    monkeypatch.setattr(datasets, "load_dataset", offline)
    test_set = glue_test_set(elm_eval.get_task("mnli"))
    assert test_set.rows == {} and set(test_set.missing) == {"MNLI-m", "MNLI-mm", "AX"}
    assert "offline" in test_set.missing["AX"]
    assert write_predictions(None, None, test_set, tmp_path / "out", max_length=8, pad_id=0)["files"] == {}


@pytest.mark.slow
def test_the_tasks_stage_writes_each_students_submission(tmp_path, tiny_teacher_dir, monkeypatch):
    """The tiny pipeline on RTE (the hub's, faked): both students' RTE.tsv, a record of them, and
    task results whose scores are the best evaluation's."""
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    fields = {
        "teacher": {"name_or_path": str(tiny_teacher_dir)},
        "tasks": {"tasks": ["rte"], "eval_every": 2},
        "eval": {"lm": False, "latency": False},
    }
    config = RunConfig.model_validate(merge_configs(preset("tiny").model_dump(mode="json"), fields))
    run = Run.open(config, tmp_path / "run")
    run_all(run, echo=lambda _: None)
    layout = run.layout
    for student in ("found", "baseline"):
        rows = read_submission(layout.glue_submission_dir(student) / "RTE.tsv")
        assert len(rows) == HUB_SIZES["test"]
        assert {p for _, p in rows} <= {"entailment", "not_entailment"}
        record = json.loads(layout.glue_submission_record(student).read_text())
        assert record == {"rte": {"files": {"RTE": HUB_SIZES["test"]}, "missing": {}}}
        selection = json.loads(layout.task_selection("rte", student).read_text())
        assert [e["step"] for e in selection["evaluations"]] == [2, 4, 6]
        result = elm_eval.load_result(layout.results / f"task-rte-{student}.json")
        assert result.score == selection["best"]["score"] == max(e["score"] for e in selection["evaluations"])
        assert result.settings["best_step"] == selection["best"]["step"]
    assert not (layout.glue_submission_dir("teacher")).exists()
