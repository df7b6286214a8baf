"""bf16 training, as the paper presets run it (DeepSpeed ZeRO-0 with bf16; on CPU here): FFN growth
reaches the optimizer's fp32 master weights and moments, and training ends with an fp32 module
holding the master weights (what the stages export), under ZeRO-0, 1 and 2."""

from __future__ import annotations

import pytest
import torch

import elm_space
from elm_train.config import DeepSpeedConfig, OptimConfig
from elm_train.models import ElmSupernet
from elm_train.training.engine import build_engine, full_precision_weights, mixed_precision_masters
from elm_train.training.supernet_training import drop_unsampled_gradients, reset_grown_slices


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _masters(optimizer, net):
    """Each parameter's fp32 master copy, by name, whichever way DeepSpeed keeps it."""
    from deepspeed.utils import safe_get_full_fp32_param

    masters = mixed_precision_masters(optimizer)
    return {
        name: masters[id(p)] if id(p) in masters else safe_get_full_fp32_param(p)
        for name, p in net.named_parameters()
    }


def _moments(optimizer, net, name):
    from deepspeed.utils import safe_get_full_optimizer_state

    param = net.get_parameter(name)
    masters = mixed_precision_masters(optimizer)
    if masters:
        state = optimizer.optimizer.state[masters[id(param)]]
        return [state["exp_avg"], state["exp_avg_sq"]]
    return [safe_get_full_optimizer_state(param, key) for key in ("exp_avg", "exp_avg_sq")]


@pytest.mark.parametrize(
    ("zero", "precision"),
    [*(pytest.param(z, "bf16", marks=pytest.mark.precision("bf16")) for z in (0, 1, 2)), (2, "fp32")],
)
def test_growth_reaches_the_fp32_masters_and_moments(zero, precision):
    """Under ZeRO 1-2 this needs the biases' optimizer state, which DeepSpeed leaves unlinked."""
    space = elm_space.preset("tiny", vocab_size=50, max_positions=16)
    torch.manual_seed(0)
    net = ElmSupernet(space)
    engine, optimizer, _ = build_engine(
        net,
        DeepSpeedConfig(zero_stage=zero, precision=precision, micro_batch_size=2),
        OptimConfig(lr=1e-2),
        8,
    )
    ids = torch.randint(0, 50, (2, 12))
    picks = [0, 2, 0]  # the candidates that grow below are the trained ones
    wide = space.architecture(
        [next(o for o in space.options(i) if o.candidate == j) for i, j in enumerate(picks)]
    )
    for _ in range(2):
        loss = engine(ids, arch=wide, labels=ids, head="masked_lm").loss
        engine.backward(loss)
        drop_unsampled_gradients(net, wide)
        engine.step()
    grown = elm_space.grow(space, [(0, 0), (1, 2)])
    record = net.grow(grown, generator=torch.Generator().manual_seed(3))
    before = {n: m.detach().clone() for n, m in _masters(optimizer, net).items()}
    reset_grown_slices(optimizer, net, record)
    after = _masters(optimizer, net)
    for change in record.slices:
        length = change.stop - change.start
        fresh = net.get_parameter(change.name).detach().narrow(change.dim, change.start, length).float()
        master = after[change.name].narrow(change.dim, change.start, length)
        torch.testing.assert_close(master, fresh, atol=0, rtol=0)  # the fresh values, not the old ones
        kept = after[change.name].narrow(change.dim, 0, change.start)
        torch.testing.assert_close(
            kept, before[change.name].narrow(change.dim, 0, change.start), atol=0, rtol=0
        )
        for moment in _moments(optimizer, net, change.name):
            assert torch.count_nonzero(moment.narrow(change.dim, change.start, length)) == 0
            assert torch.count_nonzero(moment.narrow(change.dim, 0, change.start)) > 0
    # the next step starts the slices from their fresh values: they move by one small update only
    loss = engine(ids, arch=elm_space.sample(grown, 0), labels=ids, head="masked_lm").loss
    engine.backward(loss)
    engine.step()
    for change in record.slices:
        length = change.stop - change.start
        now = net.get_parameter(change.name).detach().float().narrow(change.dim, change.start, length)
        fresh = after[change.name].narrow(change.dim, change.start, length)
        assert (now - fresh).abs().max() <= 0.02 + 0.01 * fresh.abs().max()


@pytest.mark.precision("bf16")
@pytest.mark.parametrize("zero", [0, 2])
def test_bf16_training_leaves_an_fp32_module_with_the_master_weights(zero):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 1))
    engine, optimizer, _ = build_engine(
        model, DeepSpeedConfig(zero_stage=zero, precision="bf16", micro_batch_size=4), OptimConfig(lr=1e-3), 4
    )
    x = torch.randn(4, 8).bfloat16()
    for _ in range(3):
        loss = engine(x).float().pow(2).mean()
        engine.backward(loss)
        engine.step()
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    masters = {n: m.detach().clone() for n, m in _masters(optimizer, model).items()}
    assert any((m - model.get_parameter(n).float()).abs().max() > 0 for n, m in masters.items())
    full_precision_weights(model, optimizer)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    for name, value in masters.items():
        torch.testing.assert_close(model.get_parameter(name).detach(), value, atol=0, rtol=0)
    full_precision_weights(model, optimizer)  # an fp32 module is left as it is
    assert {p.dtype for p in model.parameters()} == {torch.float32}
