"""Fine-tuning a tiny model on small synthetic tasks reaches the scores asserted here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from transformers import BertForSequenceClassification, BertModel

from elm_eval.errors import ElmEvalError
from elm_eval.finetune import FinetuneConfig, evaluate_task, finetune, predict_task
from elm_eval.task_data import load_task_data
from elm_eval.tasks import FileSource, TaskSpec, get_task, load_task_spec

FAST = dict(learning_rate=3e-3, epochs=4, batch_size=16, max_length=16, progress=False)


@pytest.fixture(scope="module")
def base(tokenizer, bert_config) -> BertModel:
    torch.manual_seed(0)
    return BertModel(bert_config(len(tokenizer)))


def test_separable_task_is_learned(base, tokenizer, toy_task_dir: Path, tmp_path: Path) -> None:
    spec = load_task_spec(toy_task_dir / "task.yaml")
    result, model = finetune(base, tokenizer, spec, FinetuneConfig(**FAST))
    assert result.score >= 0.9
    assert result.validation_metrics == {"accuracy": result.score}
    assert result.test_metrics is not None and result.test_metrics["accuracy"] >= 0.9
    assert len(result.train_loss_curve) == 4 * 15 and len(result.validation_score_per_epoch) == 4
    assert np.mean(result.train_loss_curve[-5:]) < 0.5 * np.mean(result.train_loss_curve[:5])
    # the returned model is the trained one: its own predictions reproduce the reported accuracy
    data = load_task_data(spec)
    batch = tokenizer(
        data.validation.text_a, padding=True, truncation=True, max_length=16, return_tensors="pt"
    )
    with torch.no_grad():
        predicted = model.eval()(**batch).logits.argmax(-1)
    assert (predicted == torch.tensor(data.validation.labels)).float().mean().item() == pytest.approx(
        result.score
    )
    assert result.num_parameters == sum(p.numel() for p in model.parameters())
    # the per-example result: the predictions behind the score, in the split's order
    assert result.validation_predictions == predicted.tolist()
    # and an already fine-tuned classifier predicted again (saved and reloaded) gives the same
    model.save_pretrained(tmp_path / "classifier")
    again = predict_task(tmp_path / "classifier", tokenizer, data, FinetuneConfig(**FAST), name="toy")
    assert again.predictions == predicted.tolist() and again.labels == list(data.validation.labels)
    assert again.score == pytest.approx(result.score) and again.split == "validation" and again.model == "toy"
    with pytest.raises(ElmEvalError, match="label mismatch"):
        predict_task(model, tokenizer, data.spec.model_copy(update={"num_labels": 3}), FinetuneConfig(**FAST))


def test_same_seed_same_run_and_caller_model_untouched(tokenizer, bert_config, toy_task_dir: Path) -> None:
    spec = load_task_spec(toy_task_dir / "task.yaml").capped(train=64, validation=16)
    torch.manual_seed(1)
    classifier = BertForSequenceClassification(bert_config(len(tokenizer), num_labels=2))
    before = {key: value.clone() for key, value in classifier.state_dict().items()}
    config = FinetuneConfig(**{**FAST, "epochs": 1})
    first, trained = finetune(classifier, tokenizer, spec, config)
    second, _ = finetune(classifier, tokenizer, spec, config)
    assert first.train_loss_curve == second.train_loss_curve
    assert all(torch.equal(before[key], value) for key, value in classifier.state_dict().items())
    assert not torch.equal(trained.classifier.weight.cpu(), before["classifier.weight"])


def test_regression_task_learns_a_correlated_score(tmp_path: Path, base, tokenizer) -> None:
    positive, negative = ["good", "great", "nice", "love"], ["bad", "awful", "sad", "hate"]
    rng = np.random.default_rng(0)

    def write(name: str, count: int) -> Path:
        lines = ["sentence\tscore"]
        for _ in range(count):
            k = int(rng.integers(0, 4))  # how many positive words: the target, up to noise
            words = list(rng.choice(positive, k)) + list(rng.choice(negative, 3 - k)) + ["the", "movie"]
            rng.shuffle(words)
            lines.append(f"{' '.join(words)}\t{k + rng.normal(0, 0.1):.3f}")
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return tmp_path / name

    spec = TaskSpec(
        name="toy-sts",
        source=FileSource(train=write("train.tsv", 240), validation=write("dev.tsv", 80)),
        text_columns=["sentence"],
        label_column="score",
        task_type="regression",
        num_labels=1,
        metric="pearson_spearman",
    )
    result, model = finetune(base, tokenizer, spec, FinetuneConfig(**{**FAST, "epochs": 6}))
    data = load_task_data(spec)
    batch = tokenizer(
        data.validation.text_a, padding=True, truncation=True, max_length=16, return_tensors="pt"
    )
    with torch.no_grad():
        predicted = model.eval()(**batch).logits.squeeze(-1).numpy()
    pearson, spearman = (
        pearsonr(predicted, data.validation.labels)[0],
        spearmanr(predicted, data.validation.labels)[0],
    )
    assert result.score == pytest.approx((pearson + spearman) / 2, abs=1e-5)
    assert result.score > 0.8


def test_label_count_mismatch_between_model_and_task(tokenizer, bert_config, toy_task_dir: Path) -> None:
    spec = load_task_spec(toy_task_dir / "task.yaml")
    three_way = BertForSequenceClassification(bert_config(len(tokenizer), num_labels=3))
    with pytest.raises(ElmEvalError, match="label mismatch: the model has 3 output labels, task 'toy' has 2"):
        finetune(three_way, tokenizer, spec, FinetuneConfig(**FAST))


def test_builtin_offline_tweet_task_runs_end_to_end(base, tokenizer) -> None:
    spec = get_task("tweet-sentiment").capped(train=64, validation=32, test=32)
    result = evaluate_task(base, tokenizer, spec, FinetuneConfig(**{**FAST, "epochs": 1}))
    assert (result.task, result.metric, result.num_train_examples, result.num_validation_examples) == (
        "tweet-sentiment", "accuracy", 64, 32
    )  # fmt: skip
    assert round(result.score * 32) == pytest.approx(result.score * 32)  # a count of right answers out of 32
    assert result.test_metrics is not None and set(result.test_metrics) == {"accuracy"}
    assert len(result.train_loss_curve) == 4


def test_glue_by_name_fails_clearly_offline(base, tokenizer, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ElmEvalError, match="could not load hub dataset 'nyu-mll/glue' \\(sst2\\) split 'train'"
    ):
        evaluate_task(base, tokenizer, "sst2", FinetuneConfig(**FAST))
