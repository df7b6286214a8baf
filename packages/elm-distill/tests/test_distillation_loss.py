"""DistillConfig validation and DistillationLoss: totals equal the hand-assembled sum."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from elm_distill import (
    LOSSES,
    QKV,
    DistillationLoss,
    DistillConfig,
    Features,
    dist_loss,
    hidden_mse,
    kl_div_loss,
    minilm_v2_loss,
    pearson_hidden_loss,
    register_loss,
)


def features(width: int, layers: int, generator: torch.Generator, grad: bool = False) -> Features:
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_(grad)

    return Features(
        embeddings=randn(3, 7, width),
        attention=[randn(3, 7, width) for _ in range(layers)],
        layers=[randn(3, 7, width) for _ in range(layers)],
        qkv=[QKV(randn(3, 7, width), randn(3, 7, width), randn(3, 7, width)) for _ in range(layers)],
        logits=randn(3, 4),
    )


CONFIG = {
    "terms": [
        {"loss": "pearson", "features": "embeddings", "projection": "hidden"},
        {"loss": "mse", "features": "attention", "projection": "hidden", "weight": 0.5},
        {"loss": "pearson", "features": "layers", "projection": "hidden", "weight": 2.0},
        {"loss": "dist", "features": "logits", "params": {"gamma": 0.5}},
        {"loss": "kl", "features": "logits", "weight": 0.25},
        {"loss": "minilm", "features": "qkv", "layer_pairs": [[1, 3]], "params": {"num_relation_heads": 2}},
    ],
    "temperature": 2.0,
    "layer_map": {"kind": "uniform_first"},
    "projections": {"hidden": {"student_widths": [4], "teacher_width": 6}},
}


@pytest.fixture
def objective() -> DistillationLoss:
    return DistillationLoss(CONFIG).double()


def test_total_equals_the_hand_assembled_sum(objective, mask, generator) -> None:
    student, teacher = features(4, 2, generator), features(6, 4, generator)
    project = objective.projections["hidden"]
    pairs = [(0, 0), (1, 2)]  # uniform_first: 2 student layers from 4 teacher layers
    expected = {
        "embeddings.pearson": pearson_hidden_loss(project(student.embeddings), teacher.embeddings, mask),
        "attention.mse": 0.5
        * sum(hidden_mse(project(student.attention[s]), teacher.attention[t], mask) for s, t in pairs),
        "layers.pearson": 2.0
        * sum(pearson_hidden_loss(project(student.layers[s]), teacher.layers[t], mask) for s, t in pairs),
        "logits.dist": dist_loss(student.logits, teacher.logits, temperature=2.0, gamma=0.5),
        "logits.kl": 0.25 * kl_div_loss(student.logits, teacher.logits, temperature=2.0),
        "qkv.minilm": minilm_v2_loss(student.qkv[1], teacher.qkv[3], mask, num_relation_heads=2),
    }
    output = objective(student, teacher, mask)
    assert list(output.terms) == list(expected)
    for label, value in expected.items():
        assert output.terms[label].item() == pytest.approx(value.item(), rel=1e-12), label
    assert output.total.item() == pytest.approx(sum(v.item() for v in expected.values()), rel=1e-12)
    floats = output.as_floats()
    assert floats["total"] == pytest.approx(sum(v for k, v in floats.items() if k != "total"), rel=1e-12)


def test_gradients_reach_student_and_projection(objective, mask, generator) -> None:
    student, teacher = features(4, 2, generator, grad=True), features(6, 4, generator)
    objective(student, teacher, mask).total.backward()
    assert torch.isfinite(student.layers[1].grad).all() and torch.count_nonzero(student.layers[1].grad) > 0
    weight = objective.projections["hidden"].maps["4"].weight
    assert weight.grad is not None and torch.count_nonzero(weight.grad) > 0


def test_term_params_override_the_default_temperature(mask, generator) -> None:
    student, teacher = features(4, 1, generator), features(4, 1, generator)
    objective = DistillationLoss(
        {"terms": [{"loss": "kl", "features": "logits", "params": {"temperature": 5.0}}], "temperature": 2.0}
    )
    expected = kl_div_loss(student.logits, teacher.logits, temperature=5.0)
    assert objective(student, teacher, mask).total.item() == pytest.approx(expected.item(), rel=1e-12)


def test_token_level_logits_get_the_mask(mask, generator, scramble) -> None:
    student = Features(logits=torch.randn(3, 7, 5, generator=generator, dtype=torch.float64))
    teacher = Features(logits=torch.randn(3, 7, 5, generator=generator, dtype=torch.float64))
    objective = DistillationLoss({"terms": [{"loss": "soft_ce", "features": "logits"}]})
    before = objective(student, teacher, mask).total
    after = objective(Features(logits=scramble(student.logits, mask)), teacher, mask).total
    assert after.item() == pytest.approx(before.item(), rel=1e-12)


def test_missing_features_are_named(mask, generator) -> None:
    objective = DistillationLoss({"terms": [{"loss": "minilm", "features": "qkv"}]})
    student = Features(layers=[torch.randn(3, 7, 4)])
    with pytest.raises(ValueError, match=r"term 'qkv.minilm' needs student.qkv, which is empty \(tap with"):
        objective(student, student, mask)


def test_layer_pair_outside_the_model_is_named(mask, generator) -> None:
    objective = DistillationLoss({"terms": [{"loss": "mse", "features": "layers", "layer_pairs": [[0, 9]]}]})
    f = features(4, 2, generator)
    with pytest.raises(ValueError, match=r"layer pair \(0, 9\) is outside"):
        objective(f, f, mask)


def test_custom_loss_by_name(mask, generator) -> None:
    @register_loss("test_l1")
    def l1(student, teacher, mask=None, scale: float = 1.0):
        return scale * (student - teacher).abs().mean()

    try:
        student, teacher = features(4, 1, generator), features(4, 1, generator)
        objective = DistillationLoss(
            {"terms": [{"loss": "test_l1", "features": "embeddings", "params": {"scale": 3.0}}]}
        )
        expected = 3.0 * (student.embeddings - teacher.embeddings).abs().mean()
        assert objective(student, teacher, mask).total.item() == pytest.approx(expected.item(), rel=1e-12)
    finally:
        LOSSES.unregister("test_l1")


def test_config_round_trips_through_json() -> None:
    config = DistillConfig.model_validate(CONFIG)
    assert DistillConfig.model_validate_json(config.model_dump_json()) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"terms": [{"loss": "tinybert", "features": "layers"}]},
            r"terms\.0\.loss\n.*no loss named 'tinybert'",
        ),
        (
            {"terms": [{"loss": "dist", "features": "logits", "params": {"alpha": 1}}]},
            r"takes no parameter\(s\) \['alpha'\]",
        ),
        (
            {"terms": [{"loss": "mse", "features": "layers", "projection": "wide"}]},
            r"projection 'wide' is not in projections",
        ),
        ({"terms": [{"loss": "kl", "features": "logits", "projection": "hidden"}]}, "projection applies to"),
        (
            {"terms": [{"loss": "kl", "features": "logits", "layer_pairs": [[0, 0]]}]},
            "only applies to per-layer",
        ),
        ({"terms": [{"loss": "mse", "features": "layers"}] * 2}, "term labels must be unique"),
        ({"terms": [{"loss": "mse", "features": "layers", "weight": -1}]}, r"terms\.0\.weight"),
        ({"terms": [{"loss": "mse", "features": "hidden"}]}, r"terms\.0\.features"),
        ({"terms": []}, "at least 1 item"),
        ({"temperature": 0}, "temperature"),
        ({"layer_map": {"kind": "explicit"}}, "needs teacher_layers"),
        ({"layer_map": {"kind": "uniform_last", "teacher_layers": [1]}}, "only used with kind 'explicit'"),
        ({"projections": {"hidden": {"student_widths": [], "teacher_width": 6}}}, "student_widths"),
        (
            {"terms": [{"loss": "mse", "features": "layers", "wieght": 2}]},
            r"terms\.0\.wieght\n.*Extra inputs",
        ),
    ],
)
def test_bad_configs_are_explained(change, message) -> None:
    with pytest.raises(ValidationError, match=message):
        DistillConfig.model_validate({**CONFIG, **change})
