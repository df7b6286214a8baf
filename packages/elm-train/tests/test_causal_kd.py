"""Distillation for the causal family: logits KD and the LM loss next to the hidden-state terms."""

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import elm_space
from elm_train.config import KDConfig
from elm_train.models import ElmSupernet
from elm_train.teacher import describe, teacher_layers, teacher_width
from elm_train.training.kd import TeacherFeatures, build_kd_loss
from elm_train.training.supernet_training import SupernetKD

VOCAB = 50


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    teacher = GPT2LMHeadModel(
        GPT2Config(vocab_size=VOCAB, n_embd=24, n_layer=2, n_head=2, n_positions=32, resid_pdrop=0.0)
    ).eval()
    space = elm_space.preset("tiny", family="causal", type_vocab_size=0, vocab_size=VOCAB)
    ids = torch.randint(VOCAB, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # three padded positions in the second row
    return teacher, space, ids, mask


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_teacher_dimensions_come_from_gpt2_names(setup):
    teacher, *_ = setup
    assert (teacher.config.n_embd, teacher.config.n_layer) == (24, 2)
    assert (teacher_width(teacher), teacher_layers(teacher)) == (24, 2)
    assert describe(teacher)["parameters"] == sum(p.numel() for p in teacher.parameters())


def test_logits_kd_and_lm_terms_match_a_float64_computation(setup):
    teacher, space, ids, mask = setup
    kd = KDConfig(
        embedding_weight=0, attention_weight=0, layer_weight=1.0, logits_weight=0.7, temperature=2.0
    )
    objective = build_kd_loss(kd, space, teacher_width(teacher), teacher_layers(teacher))
    torch.manual_seed(1)
    model = SupernetKD(ElmSupernet(space), objective, lm_weight=0.3).eval()
    assert model.head == "causal_lm"
    arch = elm_space.sample(space, 3)
    features = TeacherFeatures(teacher)(ids, mask)
    assert features.logits is not None and features.logits.shape == (2, 10, VOCAB)
    loss, terms, _ = model(ids, mask, arch, features, want_ffn=False)

    student = model.student(ids, mask, arch).logits.detach().double().numpy()
    with torch.no_grad():
        target = teacher(input_ids=ids, attention_mask=mask).logits.double().numpy()
    real = mask.numpy().astype(bool)
    temperature = 2.0
    p_teacher = np.exp(_log_softmax(target / temperature))
    per_position = -(p_teacher * _log_softmax(student / temperature)).sum(-1)
    expected_kd = 0.7 * temperature**2 * per_position[real].mean()
    assert terms["logits.soft_ce"] == pytest.approx(expected_kd, rel=1e-5)

    # the LM loss: position j predicts token j + 1, padded targets excluded
    log_p = _log_softmax(student)
    nll = [-log_p[b, j, ids[b, j + 1]] for b in range(2) for j in range(9) if real[b, j + 1]]
    assert terms["lm"] == pytest.approx(float(np.mean(nll)), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(
        terms["layers.pearson"] + terms["logits.soft_ce"] + 0.3 * terms["lm"], rel=1e-6
    )


def test_padded_positions_do_not_change_the_logits_term(setup):
    teacher, space, ids, mask = setup
    kd = KDConfig(embedding_weight=0, attention_weight=0, layer_weight=0, logits_weight=1.0)
    objective = build_kd_loss(kd, space, teacher_width(teacher), teacher_layers(teacher))
    model = SupernetKD(ElmSupernet(space), objective).eval()
    assert model.head == "causal_lm" and model.lm_weight == 0
    arch = elm_space.sample(space, 0)
    values = []
    for fill in (1, 7):
        other = ids.clone()
        other[1, 7:] = fill  # the padded tail changes; causal attention and the mask hide it
        _, terms, _ = model(other, mask, arch, TeacherFeatures(teacher)(other, mask), want_ffn=False)
        values.append(terms["logits.soft_ce"])
    assert values[0] == pytest.approx(values[1], rel=1e-6)


def test_the_masked_family_gets_no_logits_term():
    space = elm_space.preset("tiny", vocab_size=VOCAB)
    objective = build_kd_loss(KDConfig(), space, 24, 2)
    assert [t.label for t in objective.config.terms] == [
        "embeddings.pearson",
        "attention.pearson",
        "layers.pearson",
    ]
    assert SupernetKD(ElmSupernet(space), objective).head == "none"
    causal = elm_space.preset("tiny", family="causal", type_vocab_size=0)
    only_logits = build_kd_loss(
        KDConfig(embedding_weight=0, attention_weight=0, layer_weight=0), causal, 24, 2
    )
    assert [t.label for t in only_logits.config.terms] == ["logits.soft_ce"]  # on by default for causal
    nothing = KDConfig(embedding_weight=0, attention_weight=0, layer_weight=0, logits_weight=0)
    with pytest.raises(ValueError, match="nothing to distil"):
        build_kd_loss(nothing, causal, 24, 2)
