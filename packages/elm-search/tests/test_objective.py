import pytest

from elm_search import LatencyPredictor, Objective, flop_objective, latency_objective, param_objective
from elm_space import count_flops, count_params, preset, sample


def test_ready_made_objectives_are_exact_and_minimised(space6, make_table):
    arch = sample(space6, 5)
    table = make_table(space6, 0)
    assert param_objective(head="masked_lm")(arch) == count_params(arch, head="masked_lm")
    assert flop_objective(128)(arch) == count_flops(arch, 128)
    assert latency_objective(LatencyPredictor(table=table))(arch) == LatencyPredictor(table=table).predict(
        arch
    )
    for o in (param_objective(), flop_objective(8), latency_objective(LatencyPredictor(table=table))):
        assert not o.maximize and o.sign() == -1.0


def test_objective_validation():
    with pytest.raises(ValueError, match="non-empty"):
        Objective(" ", lambda a: 0.0)
    with pytest.raises(TypeError, match="fn must be callable"):
        Objective("x", 3.0)
    with pytest.raises(ValueError, match="seq_len=0 must be positive"):
        flop_objective(0)


def test_objective_returns_float():
    arch = sample(preset("tiny"), 0)
    assert Objective("n", lambda a: len(a.layers))(arch) == 3.0
