"""Question-answering distillation: the loss by hand, best-dev selection scored as elm-eval scores,
and the settings' checks (METHOD.md sections 3-4: soft cross-entropy on start and end logits)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, BertConfig, BertForQuestionAnswering

import elm_eval
import elm_space
from elm_eval.qa_standin import standin_rows
from elm_train.config import DeepSpeedConfig, OptimConfig, QATaskSettings, TaskStageConfig
from elm_train.models import ElmForQuestionAnswering
from elm_train.models.settings import elm_config
from elm_train.training.loop import LoopSettings
from elm_train.training.qa_distill import (
    QATaskKD,
    QATaskTraining,
    QATeacher,
    QAValidation,
    encode_train,
    span_logits,
)
from elm_train.training.task_distill import task_kd_loss

QA = QATaskSettings(max_seq_length=48, doc_stride=8, max_query_length=8)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher_dir):
    return AutoTokenizer.from_pretrained(tiny_teacher_dir)  # 400 PTB words, as the stand-in's text


def _split(version: str, split: str, n: int) -> elm_eval.QASplit:
    rows = standin_rows(version, split, n)
    return elm_eval.QASplit(
        ids=[r["id"] for r in rows],
        titles=[r["title"] for r in rows],
        contexts=[r["context"] for r in rows],
        questions=[r["question"] for r in rows],
        answers=[r["answers"] for r in rows],
        where=[f"row {i}" for i in range(len(rows))],
    )


def student(vocab: int, seed: int = 0) -> ElmForQuestionAnswering:
    torch.manual_seed(seed)
    arch = elm_space.sample(elm_space.preset("tiny", vocab_size=vocab, max_positions=64), 3)
    return ElmForQuestionAnswering(elm_config(arch))


def teacher(vocab: int, seed: int = 1) -> BertForQuestionAnswering:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
    )
    return BertForQuestionAnswering(config).eval()


def _batch(tokenizer, n: int = 4) -> dict[str, torch.Tensor]:
    from elm_train.training import batches

    rows = encode_train(tokenizer, _split("v2", "train", 12), QA)
    return batches.collate(rows[:n], tokenizer.pad_token_id)


def test_loss_is_soft_ce_on_start_and_end_plus_labels_by_hand(tokenizer):
    batch = _batch(tokenizer)
    mask = batch["attention_mask"]
    assert (mask == 0).any()  # padded rows: the padding must not enter the softmaxes
    settings = TaskStageConfig(
        embedding_weight=0.0,
        layer_weight=0.0,
        label_weight=0.5,
        logits_weight=2.0,
        qa={**QA.model_dump(), "logits_params": {"temperature": 2.0}},
    )
    model, big = student(len(tokenizer)).eval(), teacher(len(tokenizer))  # eval: no dropout
    kd = QATaskKD(model, settings)
    loss, logs = kd(batch, QATeacher(big, tap=False)(batch))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    s_out, t_out = model(**inputs), big(**inputs)

    def soft_ce(s, t):
        total = 0.0
        for row in range(s.shape[0]):
            real = mask[row].bool()
            p = torch.softmax(t[row][real].double() / 2.0, -1)
            total += -(p * torch.log_softmax(s[row][real].double() / 2.0, -1)).sum()
        return total / s.shape[0]

    prediction = (
        soft_ce(s_out.start_logits, t_out.start_logits) + soft_ce(s_out.end_logits, t_out.end_logits)
    ) / 2
    starts, ends = batch["labels"][:, 0], batch["labels"][:, 1]
    label = (F.cross_entropy(s_out.start_logits, starts) + F.cross_entropy(s_out.end_logits, ends)) / 2
    assert logs["kd_loss"] == pytest.approx(float(prediction), rel=1e-5)
    loss, label, prediction = float(loss), float(label), float(prediction)
    assert loss == pytest.approx(2.0 * prediction + 0.5 * label, rel=1e-5)
    # without a teacher (the teacher's own fine-tuning) the loss is the span cross-entropy alone
    alone, logs = kd(batch, None)
    assert float(alone) == pytest.approx(label, rel=1e-5) and "kd_loss" not in logs


def test_hidden_terms_are_the_configured_ones(tokenizer):
    batch = _batch(tokenizer)
    settings = TaskStageConfig(qa=QA)  # the defaults: pearson on embeddings and layers, no attention
    model, big = student(len(tokenizer)).eval(), teacher(len(tokenizer))
    tapped = QATeacher(big, tap=True)
    objective = task_kd_loss(settings, model, tapped.width, tapped.num_layers)
    loss, logs = QATaskKD(model, settings, objective)(batch, tapped(batch))
    assert sorted(k for k in logs if k.startswith("hidden.")) == [
        "hidden.embeddings.pearson",
        "hidden.layers.pearson",
    ]
    assert float(loss) == pytest.approx(logs["kd_loss"] + logs["label_loss"] + logs["hidden_loss"], rel=1e-5)
    tapped.close()


def test_span_logits_mask_padding():
    out = type("Out", (), {"start_logits": torch.zeros(2, 3), "end_logits": torch.ones(2, 3)})()
    logits = span_logits(out, torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert logits.shape == (2, 2, 3) and logits[0, :, 2].max() < -1e3 and logits[1, 1, 2] == 1


def test_training_keeps_the_best_dev_f1_as_elm_eval_scores_it(tmp_path, tokenizer):
    train = encode_train(tokenizer, _split("v1", "train", 48), QA)
    validation = QAValidation.build(tokenizer, _split("v1", "validation", 16), QA, "squad")
    spec = elm_eval.get_qa_task("squad")
    trainer = QATaskTraining(
        "squad.teacher",
        teacher(len(tokenizer)),
        None,
        train,
        spec,  # type: ignore[arg-type]
        TaskStageConfig(qa=QA),
        OptimConfig(lr=3e-3, epochs=2, max_steps_per_epoch=4),
        LoopSettings(DeepSpeedConfig(micro_batch_size=8), seed=0, out_dir=tmp_path / "run", pad_id=0),
        validation=validation,  # type: ignore[arg-type]
        eval_every=2,
    )
    trainer.train()
    scores = [e["score"] for e in trainer.evaluations]
    assert [e["step"] for e in trainer.evaluations] == [2, 4, 6, 8]
    assert trainer.best["score"] == max(scores)  # ties keep the earlier model
    assert trainer.best["step"] == trainer.evaluations[scores.index(max(scores))]["step"]
    best = AutoModelForQuestionAnswering.from_pretrained(trainer.best_dir)
    config = elm_eval.QAFeatureConfig(max_length=48, doc_stride=8, max_query_length=8)
    score, values, _ = elm_eval.evaluate_qa_model(best, tokenizer, validation.split, "squad", config)
    assert score == pytest.approx(trainer.best["score"], abs=1e-9) and values == pytest.approx(
        trainer.best["values"]
    )


def test_qa_settings_are_checked():
    with pytest.raises(ValueError, match="leave no new context"):
        QATaskSettings(max_seq_length=64, doc_stride=32, max_query_length=32)
    with pytest.raises(ValueError, match="no loss named"):
        QATaskSettings(logits_loss="nope")
    with pytest.raises(ValueError, match="tasks.qa.logits_params"):
        QATaskSettings(logits_params={"nope": 1})
