"""The shipped metric modules against sklearn/scipy computed here, and their offline loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from elm_eval.errors import ElmEvalError
from elm_eval.metrics import PRIMARY_KEY, compute_metric, load_metric, metric_path


@pytest.fixture(scope="module")
def labels() -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(3)
    references = rng.integers(0, 2, 200)
    predictions = np.where(rng.random(200) < 0.75, references, 1 - references)  # a noisy classifier
    return predictions.tolist(), references.tolist()


def test_accuracy_matches_sklearn(labels: tuple[list[int], list[int]]) -> None:
    predictions, references = labels
    score, values = compute_metric("accuracy", predictions, references)
    assert values == {"accuracy": score}
    assert score == pytest.approx(accuracy_score(references, predictions), abs=1e-12)
    assert 0.6 < score < 0.9  # the noisy classifier above is right about 75% of the time


def test_f1_matches_sklearn_binary_and_macro(labels: tuple[list[int], list[int]]) -> None:
    predictions, references = labels
    assert compute_metric("f1", predictions, references)[0] == pytest.approx(
        f1_score(references, predictions)
    )
    rng = np.random.default_rng(4)
    multi_ref, multi_pred = rng.integers(0, 3, 90).tolist(), rng.integers(0, 3, 90).tolist()
    expected = f1_score(multi_ref, multi_pred, average="macro")
    assert compute_metric("f1", multi_pred, multi_ref)[0] == pytest.approx(expected)
    assert load_metric("f1").compute(predictions=multi_pred, references=multi_ref, average="micro")[
        "f1"
    ] == pytest.approx(f1_score(multi_ref, multi_pred, average="micro"))


def test_matthews_matches_sklearn(labels: tuple[list[int], list[int]]) -> None:
    predictions, references = labels
    score, _ = compute_metric("matthews_correlation", predictions, references)
    assert score == pytest.approx(matthews_corrcoef(references, predictions), abs=1e-12)
    assert compute_metric("matthews_correlation", [1] * 10, [0, 1] * 5)[0] == 0.0


def test_accuracy_f1_is_mean_of_both(labels: tuple[list[int], list[int]]) -> None:
    predictions, references = labels
    score, values = compute_metric("accuracy_f1", predictions, references)
    accuracy, f1 = accuracy_score(references, predictions), f1_score(references, predictions)
    assert values["accuracy"] == pytest.approx(accuracy)
    assert values["f1"] == pytest.approx(f1)
    assert score == pytest.approx((accuracy + f1) / 2)


def test_pearson_spearman_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    references = rng.uniform(0, 5, 120)
    predictions = references + rng.normal(0, 1.5, 120) ** 3  # monotone-ish but not linear
    score, values = compute_metric("pearson_spearman", predictions.tolist(), references.tolist())
    pearson = pearsonr(predictions, references)[0]
    spearman = spearmanr(predictions, references)[0]
    assert values["pearson"] == pytest.approx(pearson, abs=1e-9)
    assert values["spearman"] == pytest.approx(spearman, abs=1e-9)
    assert score == pytest.approx((pearson + spearman) / 2, abs=1e-9)
    assert abs(values["pearson"] - values["spearman"]) > 1e-3  # the two really are different numbers


def test_constant_regression_predictions_give_nan() -> None:
    score, _ = compute_metric("pearson_spearman", [1.0] * 6, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert np.isnan(score)


def test_unknown_metric_and_empty_split_are_clear_errors() -> None:
    with pytest.raises(ElmEvalError, match="unknown metric 'bleu'"):
        metric_path("bleu")
    with pytest.raises(ElmEvalError, match="empty split"):
        compute_metric("accuracy", [], [])


def test_every_metric_has_a_module_file() -> None:
    for name in PRIMARY_KEY:
        assert metric_path(name).is_file()


@pytest.mark.slow
def test_metric_modules_load_offline_where_hub_metrics_cannot(tmp_path) -> None:
    """In a fresh process with the hub switched off and an empty HF cache, our modules load by path
    and compute, while the hub's ``accuracy`` cannot be loaded."""
    script = textwrap.dedent(
        """
        import json
        import evaluate
        from elm_eval.metrics import PRIMARY_KEY, metric_path
        out = {}
        for name in PRIMARY_KEY:
            module = evaluate.load(str(metric_path(name)))
            out[name] = module.compute(predictions=[1, 0, 1, 1], references=[1, 0, 0, 1])
        ref = {"id": "q", "answers": {"text": ["the Cat"], "answer_start": [0]}}
        out["squad"] = evaluate.load(str(metric_path("squad"))).compute(
            predictions=[{"id": "q", "prediction_text": "cat"}], references=[ref]
        )
        out["squad_v2"] = evaluate.load(str(metric_path("squad_v2"))).compute(
            predictions=[{"id": "q", "prediction_text": "a cat!", "no_answer_probability": 0.0}], references=[ref]
        )
        try:
            evaluate.load("accuracy")
            out["hub"] = "loaded"
        except Exception as exc:
            out["hub"] = type(exc).__name__
        print(json.dumps(out))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_EVALUATE_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["HF_HOME"] = str(tmp_path / "hf-home")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out.pop("hub") != "loaded"
    references, predictions = [1, 0, 0, 1], [1, 0, 1, 1]
    assert out["accuracy"]["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert out["f1"]["f1"] == pytest.approx(f1_score(references, predictions))
    assert out["matthews_correlation"]["matthews_correlation"] == pytest.approx(
        matthews_corrcoef(references, predictions)
    )
    assert out.pop("squad") == {"exact_match": 100.0, "f1": 100.0}  # "cat" matches "the Cat"
    assert out.pop("squad_v2")["exact"] == 100.0
    assert out["pearson_spearman"]["pearson"] == pytest.approx(pearsonr(predictions, references)[0])
    assert out["accuracy_f1"]["accuracy_f1_mean"] == pytest.approx(
        (accuracy_score(references, predictions) + f1_score(references, predictions)) / 2
    )
