"""Extractive QA: features and post-processing against a brute-force search over every span, and the
SQuAD scores against an independent implementation of the official scripts written here."""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter

import numpy as np
import pytest

import elm_eval
from elm_eval import QAFeatureConfig, QAFileSource, QASplit, QATaskSpec
from elm_eval.qa import (
    QAPrediction,
    choose_null_threshold,
    eval_features,
    postprocess,
    score_predictions,
    train_features,
)

# --- an independent SQuAD scorer (the official scripts, written out plainly) ------------------


def _norm(text):
    text = text.lower()
    text = "".join(c for c in text if c not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(gold, pred):
    g, p = _norm(gold).split(), _norm(pred).split()
    if not g or not p:
        return float(g == p)
    same = sum((Counter(g) & Counter(p)).values())
    if not same:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _scores(golds_per_example, predictions):
    """(EM, F1) in percent, max over gold answers, no-answer gold as ''."""
    em = f1 = 0.0
    for golds, pred in zip(golds_per_example, predictions, strict=True):
        golds = [g for g in golds if _norm(g)] or [""]
        em += max(float(_norm(g) == _norm(pred)) for g in golds)
        f1 += max(_f1(g, pred) for g in golds)
    n = len(predictions)
    return 100 * em / n, 100 * f1 / n


# --- hand-written examples ----------------------------------------------------------------------

CONTEXTS = [
    "the movie was good and the film was great fun",
    "w1 w2 w3 the film is bad and it was awful and dull w4 w5 w6 w7 w8 w9 a movie",
    "it is fine",
    "happy w10 w11 love the best film and the worst movie w12 w13 w14 w15 w16",
]
QUESTIONS = ["what was the movie ?", "the film is what", "is it ?", "which film was best and which worst ?"]
ANSWERS = [["good", "good and the film"], ["bad", "awful and dull"], [], ["the best film"]]


def _split() -> QASplit:
    answers = [
        {"text": a, "answer_start": [c.index(x) for x in a]} for c, a in zip(CONTEXTS, ANSWERS, strict=True)
    ]
    n = len(CONTEXTS)
    return QASplit(
        ids=[f"q{i}" for i in range(n)],
        titles=[""] * n,
        contexts=CONTEXTS,
        questions=QUESTIONS,
        answers=answers,
        where=[f"row {i + 1}" for i in range(n)],
    )


def _brute_force(split, features, starts, ends, max_answer_length):
    """Best span text and null-score difference of each example: every (start, end) token pair of
    every window, with plain loops."""
    out = []
    for example in range(len(split)):
        best, best_text, null = -math.inf, "", math.inf
        for f, ex in enumerate(features.example_index):
            if ex != example:
                continue
            offsets = features.offsets[f]
            null = min(null, starts[f][features.cls_index[f]] + ends[f][features.cls_index[f]])
            for s in range(len(starts[f])):
                for e in range(s, min(len(ends[f]), s + max_answer_length)):
                    if offsets[s] is None or offsets[e] is None:
                        continue
                    score = starts[f][s] + ends[f][e]
                    if score > best:
                        best, best_text = score, split.contexts[example][offsets[s][0] : offsets[e][1]]
        out.append((best_text, null - best))
    return out


@pytest.mark.parametrize("n_best", [1, 20])
def test_postprocess_equals_brute_force_over_every_span(tokenizer, n_best):
    split = _split()
    config = QAFeatureConfig(
        max_length=16, doc_stride=4, max_query_length=6, n_best=n_best, max_answer_length=4
    )
    features = eval_features(tokenizer, split, config)
    assert len(features) > len(split)  # long contexts are cut into several overlapping windows
    rng = np.random.default_rng(0)
    lengths = [len(ids) for ids in features.inputs["input_ids"]]
    starts = [rng.normal(size=n) for n in lengths]
    ends = [rng.normal(size=n) for n in lengths]
    predictions = postprocess(split, features, starts, ends, config)
    expected = _brute_force(split, features, starts, ends, config.max_answer_length)
    for prediction, (text, diff) in zip(predictions, expected, strict=True):
        assert prediction.text == text
        assert prediction.null_score_diff == pytest.approx(diff, abs=1e-12)
        assert len(prediction.n_best) <= n_best
        assert [s.score for s in prediction.n_best] == sorted(
            (s.score for s in prediction.n_best), reverse=True
        )


def test_context_offsets_cover_the_context_and_train_labels_point_at_the_answer(tokenizer):
    split = _split()
    config = QAFeatureConfig(max_length=16, doc_stride=4, max_query_length=6)
    train = train_features(tokenizer, split, config)
    features = eval_features(tokenizer, split, config)
    assert train["example_index"] == features.example_index
    labelled = set()
    for f, example in enumerate(train["example_index"]):
        start, end = train["start_positions"][f], train["end_positions"][f]
        offsets = features.offsets[f]
        if start == 0:  # CLS: no answer in this window
            assert end == 0
            continue
        text = split.contexts[example][offsets[start][0] : offsets[end][1]]
        assert text == split.answers[example]["text"][0]
        labelled.add(example)
    # every answerable example has its answer wholly inside at least one window
    assert labelled == {i for i, a in enumerate(split.answers) if a["text"]}


def test_scores_equal_an_independent_official_scorer():
    split = _split()
    texts = ["Good!", "awful and", "", "best film"]
    diffs = [-2.0, 0.5, 1.5, -0.3]
    predictions = [QAPrediction(i, t, [], d) for i, t, d in zip(split.ids, texts, diffs, strict=True)]
    golds = [a["text"] for a in split.answers]
    # v1.1: all answerable examples (drop the unanswerable one)
    keep = [0, 1, 3]
    sub = QASplit(
        *(
            [getattr(split, f)[i] for i in keep]
            for f in ("ids", "titles", "contexts", "questions", "answers", "where")
        )
    )
    score, values = score_predictions([predictions[i] for i in keep], sub, "squad")
    em, f1 = _scores([golds[i] for i in keep], [texts[i] for i in keep])
    assert (
        values["exact_match"] == pytest.approx(em)
        and values["f1"] == pytest.approx(f1)
        and score == values["f1"]
    )
    # v2.0 at a given threshold: a difference above it means no answer
    _, values = score_predictions(predictions, split, "squad_v2", null_threshold=0.0)
    final = ["" if d > 0.0 else t for t, d in zip(texts, diffs, strict=True)]
    em, f1 = _scores(golds, final)
    assert values["exact"] == pytest.approx(em) and values["f1"] == pytest.approx(f1)
    has = [0, 1, 3]
    assert values["HasAns_f1"] == pytest.approx(_scores([golds[i] for i in has], [final[i] for i in has])[1])
    assert values["NoAns_exact"] == 100.0 and values["NoAns_total"] == 1
    # the chosen threshold is the best of every possible cut (brute force over all of them)
    best = max(
        _scores(golds, ["" if d > cut else t for t, d in zip(texts, diffs, strict=True)])[1]
        for cut in [min(diffs) - 1, *diffs]
    )
    threshold = choose_null_threshold(predictions, split)
    score, values = score_predictions(predictions, split, "squad_v2")
    assert values["null_threshold"] == threshold and score == pytest.approx(best)


def test_metric_modules_match_the_independent_scorer_on_awkward_strings():
    golds = [["The  Cat.", "a dog"], ["an apple pie"], [""], ["x y z"]]
    preds = ["cat", "apple, pie!", "", "Y X"]
    refs = [{"id": str(i), "answers": {"text": g, "answer_start": [0] * len(g)}} for i, g in enumerate(golds)]
    records = [
        {"id": str(i), "prediction_text": p, "no_answer_probability": 0.0} for i, p in enumerate(preds)
    ]
    _, v2 = elm_eval.compute_qa_metric("squad_v2", records, refs)
    em, f1 = _scores(golds, preds)
    assert v2["exact"] == pytest.approx(em) and v2["f1"] == pytest.approx(f1)
    answerable = [0, 1, 3]
    _, v1 = elm_eval.compute_qa_metric(
        "squad",
        [{"id": str(i), "prediction_text": preds[i]} for i in answerable],
        [refs[i] for i in answerable],
    )
    em, f1 = _scores([golds[i] for i in answerable], [preds[i] for i in answerable])
    assert v1 == pytest.approx({"exact_match": em, "f1": f1})


# --- bad input ----------------------------------------------------------------------------------


def _row(**changes):
    row = {"id": "b", "title": "t", "context": "the film was good", "question": "how was it ?"}
    row["answers"] = {"text": ["good"], "answer_start": [13]}
    row.update(changes)
    return row


def _spec(tmp_path, rows, version="v1"):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "dev.jsonl").write_text(json.dumps(_row()) + "\n")
    source = QAFileSource(train=tmp_path / "train.jsonl", validation=tmp_path / "dev.jsonl")
    return QATaskSpec(name="mine", source=source, version=version)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            _row(answers={"text": ["good"], "answer_start": [3]}),
            r"line 2: answer 'good' at answer_start 3 is outside",
        ),
        (_row(answers={"text": ["great"], "answer_start": [13]}), r"line 2: answer 'great' .* reads 'good'"),
        (_row(context="   "), r"line 2: the context is empty"),
        (_row(question=""), r"line 2: the question is empty"),
        (_row(answers={"text": [], "answer_start": []}), r"line 2: 'answers' is empty; .* v2"),
        (_row(id="a"), r"line 2: id 'a' is used twice"),
        ({k: v for k, v in _row().items() if k != "question"}, r"line 2: no 'question' field"),
    ],
)
def test_bad_rows_name_the_file_and_line(tmp_path, row, message):
    spec = _spec(tmp_path, [_row(id="a"), row])
    with pytest.raises(elm_eval.ElmEvalError, match=message) as info:
        elm_eval.load_qa_data(spec)
    assert "train.jsonl" in str(info.value)


def test_unknown_columns_and_long_questions(tmp_path, tokenizer):
    renamed = [{("passage" if k == "context" else k): v for k, v in _row().items()}]
    with pytest.raises(elm_eval.ElmEvalError, match="unknown column 'context' .*train.jsonl"):
        elm_eval.load_qa_data(_spec(tmp_path, renamed))
    data = elm_eval.load_qa_data(_spec(tmp_path, [_row(question="good " * 20)]))
    config = QAFeatureConfig(max_length=24, doc_stride=4, max_query_length=None)
    with pytest.raises(elm_eval.ElmEvalError, match=r"train.jsonl, line 1: the question is 20 tokens long"):
        train_features(tokenizer, data.train, config)
    # cut to max_query_length, as BERT's SQuAD script does, the same question fits
    cut = train_features(
        tokenizer, data.train, QAFeatureConfig(max_length=24, doc_stride=4, max_query_length=8)
    )
    assert cut["input_ids"][0][1:9] == [tokenizer.convert_tokens_to_ids("good")] * 8
    assert elm_eval.load_qa_data(_spec(tmp_path, [_row(answers={"text": [], "answer_start": []})], "v2"))


def test_squad_json_layout_and_hub_names(tmp_path):
    document = {
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": "the film was good",
                        "qas": [
                            {
                                "id": "x",
                                "question": "how ?",
                                "answers": [{"text": "good", "answer_start": 13}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    (tmp_path / "dev.json").write_text(json.dumps(document))
    spec = QATaskSpec(
        name="mine", source=QAFileSource(train=tmp_path / "dev.json", validation=tmp_path / "dev.json")
    )
    data = elm_eval.load_qa_data(spec)
    assert data.validation.answers == [{"text": ["good"], "answer_start": [13]}]
    assert elm_eval.get_qa_task("SQuAD-v2").source.dataset == "rajpurkar/squad_v2"
    assert elm_eval.get_qa_task("squad").metric == "squad" and elm_eval.is_qa_task("squad_v2")
    mirrored = elm_eval.with_hub_mirrors(elm_eval.get_qa_task("squad"), {"rajpurkar/squad": tmp_path})
    assert mirrored.source.dataset == str(tmp_path)


# --- the command line, any model ------------------------------------------------------------------


def _write_qa_files(folder, sentences, version="v1"):
    """Rows in the conftest vocabulary: the answer is the word after 'the'/'a' (or none, v2)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, seed, n in (("train", 0, 24), ("dev", 1, 12)):
        rows = []
        for i, text in enumerate(sentences(n, seed)):
            words = text.split()
            answers = {"text": [words[-1]], "answer_start": [text.rindex(words[-1])]}
            if version == "v2" and i % 3 == 0:
                answers = {"text": [], "answer_start": []}
            rows.append(
                {"id": f"{split}{i}", "context": text, "question": "what is last ?", "answers": answers}
            )
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {
        "name": "toy-qa",
        "version": version,
        "source": {"kind": "files", "train": "train.jsonl", "validation": "dev.jsonl"},
    }
    (folder / "spec.yaml").write_text(json.dumps(spec))
    return folder / "spec.yaml"


@pytest.mark.parametrize(("model", "version"), [("mlm", "v1"), ("elm-mlm", "v2")])
def test_qa_command_fine_tunes_any_model_and_writes_a_result(tmp_path, model_dirs, sentences, model, version):
    from elm_eval.cli import main
    from elm_eval.report import load_result

    if model not in model_dirs:
        pytest.skip("no package registers model_type elm here")
    spec = _write_qa_files(tmp_path / "data", sentences, version)
    out = tmp_path / "out"
    argv = [
        "qa",
        "--model",
        str(model_dirs[model]),
        "--task-spec",
        str(spec),
        "--epochs",
        "1",
        "--max-length",
        "32",
    ]
    argv += [
        "--doc-stride",
        "8",
        "--max-query-length",
        "8",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    (path,) = out.glob("*.json")
    result = load_result(path)
    assert result.metric == ("squad" if version == "v1" else "squad_v2") and result.task == "toy-qa"
    assert 0.0 <= result.score <= 100.0 and result.num_validation_examples == 12
    assert result.score == result.validation_metrics["f1"]
    if version == "v2":
        assert result.validation_metrics["NoAns_total"] == 4 and "null_threshold" in result.validation_metrics


def test_qa_command_reports_bad_rows_in_one_line(tmp_path, model_dirs, sentences, capsys):
    from elm_eval.cli import main

    spec = _write_qa_files(tmp_path / "data", sentences)
    rows = (tmp_path / "data" / "dev.jsonl").read_text().splitlines()
    bad = json.loads(rows[2])
    bad["answers"]["answer_start"] = [0]
    rows[2] = json.dumps(bad)
    (tmp_path / "data" / "dev.jsonl").write_text("\n".join(rows) + "\n")
    assert main(["qa", "--model", str(model_dirs["mlm"]), "--task-spec", str(spec), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("elm-eval qa: error: ") and "dev.jsonl, line 3: answer" in err and "\n" not in err
    assert main(["qa", "--model", str(model_dirs["mlm"]), "--task", "squad", "--doc-stride", "400"]) == 2
    assert "doc_stride" in capsys.readouterr().err
