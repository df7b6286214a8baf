"""The supernet: path outputs equal extracted static models; exact parameter counts; growth."""

from __future__ import annotations

import copy

import pytest
import torch

import elm_space
from elm_space import BlockKind, SpaceError
from elm_train.models import (
    ElmForCausalLM,
    ElmForMaskedLM,
    ElmForSequenceClassification,
    ElmModel,
    ElmSupernet,
    reset_optimizer_slices,
)

TASKS = {"three_way": 3, "score": 1}


@pytest.fixture(scope="module")
def supernets(spaces, perturb) -> dict[str, ElmSupernet]:
    nets = {}
    for i, (name, space) in enumerate(spaces.items()):
        net = ElmSupernet(space, tasks=TASKS)
        perturb(net, seed=i)
        nets[name] = net.eval()
    return nets


def _lm_head(arch) -> str:
    return "causal_lm" if arch.backbone.family.value == "causal" else "masked_lm"


def test_sample_covers_both_kinds_families_and_head_counts(all_sampled):
    layers = [layer for _, arch in all_sampled for layer in arch.layers]
    assert len(all_sampled) >= 20
    assert {layer.kind for layer in layers} == {BlockKind.BERT, BlockKind.MOBILE}
    assert {layer.heads for layer in layers} == {2, 4}
    assert {arch.backbone.family.value for _, arch in all_sampled} == {"masked", "causal"}
    assert {arch.backbone.embedding.kind for _, arch in all_sampled} == {"plain", "factorized"}


def test_path_equals_extracted_model(sampled_arch, supernets, batch):
    name, arch = sampled_arch
    net = supernets[name]
    lm_head = _lm_head(arch)
    requests = {
        "output_hidden_states": True,
        "output_ffn_pre_activations": True,
        "output_attention_contexts": True,
    }
    cases = [
        ("none", None, "last_hidden_state"),
        (lm_head, None, "logits"),
        ("classification", "three_way", "logits"),
    ]
    for head, task, field in cases:
        static = net.extract(arch, head, task=task)
        assert not static.training
        expected = static(**batch, **requests)
        got = net(**batch, arch=arch, head=head, task=task, **requests)
        torch.testing.assert_close(getattr(got, field), getattr(expected, field), atol=1e-5, rtol=0)
        for key in ("hidden_states", "attention_outputs", "ffn_pre_activations", "attention_contexts"):
            for a, b in zip(getattr(got, key), getattr(expected, key), strict=True):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_static_parameter_count_equals_elm_space(sampled_arch, supernets):
    name, arch = sampled_arch
    net = supernets[name]
    for head, task in (
        ("none", None),
        (_lm_head(arch), None),
        ("classification", "three_way"),
        ("classification", "score"),
    ):
        static = net.extract(arch, head, task=task)
        labels = TASKS[task] if task else 2
        real = sum(p.numel() for p in static.parameters())
        assert real == elm_space.count_params(arch, head=head, num_labels=labels), (head, task)


def test_extracted_head_classes_and_regression(supernets, spaces, batch):
    arch = elm_space.sample(spaces["tiny"], 3)
    net = supernets["tiny"]
    assert type(net.extract(arch)) is ElmModel
    assert type(net.extract(arch, "masked_lm")) is ElmForMaskedLM
    causal = elm_space.sample(spaces["tiny_causal"], 3)
    assert type(supernets["tiny_causal"].extract(causal, "causal_lm")) is ElmForCausalLM
    regressor = net.extract(arch, "classification", task="score")
    assert type(regressor) is ElmForSequenceClassification
    assert regressor.config.problem_type == "regression"
    labels = torch.tensor([0.5, -1.0, 2.0])
    got = net(**batch, arch=arch, head="classification", task="score", labels=labels)
    expected = regressor(**batch, labels=labels)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        got.loss, ((expected.logits.squeeze(-1) - labels) ** 2).mean(), atol=1e-6, rtol=1e-6
    )


def test_train_mode_dropout_is_the_same_computation(spaces, batch):
    space = spaces["tiny_factorized"]
    net = ElmSupernet(space).train()
    arch = elm_space.sample(space, 11)
    static = net.extract(arch, "masked_lm")
    assert static.training
    torch.manual_seed(5)
    got = net(**batch, arch=arch, head="masked_lm").logits
    torch.manual_seed(5)
    expected = static(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.manual_seed(6)
    assert not torch.allclose(net(**batch, arch=arch, head="masked_lm").logits, got)


def test_forward_rejects_architectures_outside_the_space(spaces, supernets, batch):
    net = supernets["tiny"]
    arch = elm_space.sample(spaces["tiny"], 0)
    wrong_width = arch.model_copy(
        update={"layers": (arch.layers[0].model_copy(update={"ffn_width": 48}), *arch.layers[1:])}
    )
    with pytest.raises(SpaceError, match=r"layers\[0\]\.ffn_width=48"):
        net(**batch, arch=wrong_width)
    other_backbone = elm_space.sample(spaces["tiny_factorized"], 0)
    with pytest.raises(SpaceError, match="backbone"):
        net(**batch, arch=other_backbone)
    with pytest.raises(ValueError, match="causal_lm"):
        net(**batch, arch=arch, head="causal_lm")
    with pytest.raises(ValueError, match="pass task="):
        net(**batch, arch=arch, head="classification")


def test_heads_outside_the_listed_choices_still_run(spaces, supernets, batch):
    """CKA head selection may pick any divisor of the width; the path must still equal the static model."""
    arch = elm_space.sample(spaces["tiny"], 2)
    pruned = arch.with_heads([1 if layer.kind is BlockKind.BERT else 8 for layer in arch.layers])
    net = supernets["tiny"]
    expected = net.extract(pruned)(**batch).last_hidden_state
    torch.testing.assert_close(net(**batch, arch=pruned).last_hidden_state, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(net(**batch, arch=arch).last_hidden_state, expected)


def _adamw_steps(net, arch, batch, steps, optimizer):
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        out = net(**batch, arch=arch, head="masked_lm", labels=batch["input_ids"])
        out.loss.backward()
        optimizer.step()
    return out.loss


def test_growth_keeps_trained_slices_and_resets_new_ones(spaces, batch):
    torch.manual_seed(0)
    space = spaces["tiny"]
    net = ElmSupernet(space)
    # candidate 0 (BERT, 32 of 96) in layer 0 and candidate 2 (mobile, 16 of 64) in layer 1
    narrow = space.architecture([space.options(0)[0], space.options(1)[4], space.options(2)[0]])
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    _adamw_steps(net, narrow, batch, 3, optimizer)

    before = copy.deepcopy(net.state_dict())
    moments = {
        name: {k: v.clone() for k, v in optimizer.state[p].items()}
        for name, p in net.named_parameters()
        if p in optimizer.state
    }
    new_space = elm_space.grow(space, [(0, 0), (1, 2)])
    record = net.grow(new_space, generator=torch.Generator().manual_seed(3))
    touched = reset_optimizer_slices(optimizer, net, record)

    assert [(g.layer, g.candidate, g.old_width, g.new_width) for g in record.grown] == [
        (0, 0, 32, 64),
        (1, 2, 16, 32),
    ]
    assert {(s.name, s.dim, s.start, s.stop) for s in record.slices} == {
        ("layers.0.0.ffn.dense1.weight", 0, 32, 64),
        ("layers.0.0.ffn.dense1.bias", 0, 32, 64),
        ("layers.0.0.ffn.dense2.weight", 1, 32, 64),
        ("layers.1.2.ffn.dense1.weight", 0, 16, 32),
        ("layers.1.2.ffn.dense1.bias", 0, 16, 32),
        ("layers.1.2.ffn.dense2.weight", 1, 16, 32),
    }
    assert touched == 2 * len(record.slices)  # exp_avg and exp_avg_sq of each slice
    assert net.space == new_space

    state = net.state_dict()
    changed = {s.name for s in record.slices}
    for name, value in state.items():
        if name not in changed:
            torch.testing.assert_close(value, before[name], atol=0, rtol=0)
    for s in record.slices:
        length = s.stop - s.start
        old, new = before[s.name], state[s.name]
        torch.testing.assert_close(
            new.narrow(s.dim, 0, s.start), old.narrow(s.dim, 0, s.start), atol=0, rtol=0
        )
        fresh = new.narrow(s.dim, s.start, length)
        if s.name.endswith("bias"):
            assert torch.count_nonzero(fresh) == 0
        else:
            assert 0.015 < fresh.std().item() < 0.025 and abs(fresh.mean().item()) < 0.003
            assert not torch.allclose(fresh, old.narrow(s.dim, s.start, length))
        param = net.get_parameter(s.name)
        for key in ("exp_avg", "exp_avg_sq"):
            moment = optimizer.state[param][key]
            assert torch.count_nonzero(moment.narrow(s.dim, s.start, length)) == 0
            old_moment = moments[s.name][key].narrow(s.dim, 0, s.start)
            torch.testing.assert_close(moment.narrow(s.dim, 0, s.start), old_moment, atol=0, rtol=0)
            assert torch.count_nonzero(old_moment) > 0

    with pytest.raises(SpaceError, match="ffn_width=32"):
        net(**batch, arch=narrow)
    wide = new_space.architecture([new_space.options(0)[0], new_space.options(1)[4], new_space.options(2)[0]])
    assert wide.layers[0].ffn_width == 64
    loss = _adamw_steps(net, wide, batch, 3, optimizer)
    assert torch.isfinite(loss)
    grad = net.get_parameter("layers.0.0.ffn.dense1.weight").grad
    assert torch.count_nonzero(grad[32:64]) > 0 and torch.count_nonzero(grad[64:]) == 0
    net.eval()
    torch.testing.assert_close(
        net(**batch, arch=wide).last_hidden_state,
        net.extract(wide)(**batch).last_hidden_state,
        atol=1e-5,
        rtol=0,
    )


def test_growth_rejects_shrinking_and_other_changes(spaces):
    space = spaces["tiny"]
    grown = elm_space.grow(space, [(0, 0)])
    net = ElmSupernet(grown)
    with pytest.raises(SpaceError, match="shrink"):
        net.grow(space)
    with pytest.raises(SpaceError, match="backbone"):
        net.grow(spaces["tiny_factorized"])
    assert net.grow(grown).slices == ()
