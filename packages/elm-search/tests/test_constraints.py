import itertools
import random

import numpy as np
import pytest

from elm_search import (
    ConstraintError,
    EvolutionarySearch,
    EvolutionConfig,
    FlopBudget,
    LatencyBudget,
    LatencyPredictor,
    LatencyTableError,
    Objective,
    ParamBudget,
    RandomSearch,
    RandomSearchConfig,
)
from elm_space import Architecture, count_flops, count_params, preset

SMALL = EvolutionConfig(generations=3, population=10, parents=3, mutations=4, crossovers=3, max_tries=20)


def all_architectures(space):
    for layers in itertools.product(*(space.options(i) for i in range(space.num_layers))):
        yield Architecture(backbone=space.backbone, layers=layers)


def table_latency(table, arch):
    """Independent of the predictor: look each layer up by hand, add in float64."""
    ms = {(b.kind, b.ffn_width, b.heads, b.inner_size): b.ms for b in table.blocks}
    per_layer = [ms[(c.kind, c.ffn_width, c.heads, c.inner_size)] for c in arch.layers]
    return float(
        np.float64(table.embedding_ms) + np.float64(table.head_ms) + np.sum(per_layer, dtype=np.float64)
    )


def jointly_feasible(space, constraints):
    """Brute force over the whole space, vectorised: per-layer cost tables broadcast to a grid."""
    h = space.backbone.hidden_size
    ok = np.ones((len(space.options(0)),) * space.num_layers, dtype=bool)
    for c in constraints:
        total = np.zeros_like(ok, dtype=np.float64) + c.fixed_cost(space)
        for i in range(space.num_layers):
            shape = [1] * space.num_layers
            shape[i] = -1
            total = total + np.array([c.layer_cost(o, h) for o in space.options(i)]).reshape(shape)
        ok &= total <= c.limit
    return bool(ok.any())


def test_minimum_is_the_brute_force_minimum(space3, make_table):
    archs = list(all_architectures(space3))
    assert len(archs) == space3.size() == 512
    table = make_table(space3, 0)
    cases = [
        (ParamBudget(max_params=10**9), lambda a: count_params(a)),
        (ParamBudget(max_params=10**9, head="masked_lm"), lambda a: count_params(a, head="masked_lm")),
        (
            FlopBudget(max_flops=10**12, seq_len=64, head="masked_lm"),
            lambda a: count_flops(a, 64, head="masked_lm"),
        ),
        (
            LatencyBudget(max_ms=1e9, predictor=LatencyPredictor(table=table)),
            lambda a: table_latency(table, a),
        ),
    ]
    for constraint, reference in cases:
        assert constraint.minimum(space3) == pytest.approx(min(reference(a) for a in archs), rel=1e-12)
        for arch in archs[::37]:
            assert constraint.value(arch) == pytest.approx(reference(arch), rel=1e-12)


def test_constraints_never_violated_over_many_random_budgets(space6, make_problem, make_table):
    rng = random.Random(0)
    table = make_table(space6, 1)
    predictor = LatencyPredictor(table=table)
    bounds = {}
    for name, c in [
        ("params", ParamBudget(max_params=10**9)),
        ("flops", FlopBudget(max_flops=10**12, seq_len=32)),
        ("latency", LatencyBudget(max_ms=1e9, predictor=predictor)),
    ]:
        h = space6.backbone.hidden_size
        top = c.fixed_cost(space6) + sum(max(c.layer_cost(o, h) for o in space6.options(i)) for i in range(6))
        bounds[name] = (c.minimum(space6), top)
    checked = infeasible = 0
    for trial in range(24):
        # a budget anywhere from the smallest architecture to the largest, biased towards tight
        frac = {name: rng.random() ** 2 for name in bounds}
        limit = {name: lo + frac[name] * (hi - lo) for name, (lo, hi) in bounds.items()}
        kinds = rng.sample(sorted(bounds), rng.randint(1, 2))
        constraints = []
        if "params" in kinds:
            constraints.append(ParamBudget(max_params=int(limit["params"])))
        if "flops" in kinds:
            constraints.append(FlopBudget(max_flops=int(limit["flops"]), seq_len=32))
        if "latency" in kinds:
            constraints.append(LatencyBudget(max_ms=limit["latency"], predictor=predictor))
        objective = Objective("score", make_problem(space6, trial))
        try:
            if trial % 2:
                result = EvolutionarySearch(
                    space6, objective, SMALL.model_copy(update={"seed": trial}), constraints
                ).search(progress=False)
            else:
                result = RandomSearch(
                    space6,
                    objective,
                    RandomSearchConfig(seed=trial, generations=3, population=10, max_tries=20),
                    constraints,
                ).search(progress=False)
        except ConstraintError as err:
            # only two budgets together may be unsatisfiable (each alone always has a solution),
            # and the search may only give up when they really are: check all 262144 architectures
            assert len(constraints) == 2 and "together they are too tight" in str(err)
            assert not jointly_feasible(space6, constraints)
            infeasible += 1
            continue
        assert result.records
        for r in result.records:
            arch = r.architecture
            if "params" in kinds:
                assert count_params(arch) <= int(limit["params"])
            if "flops" in kinds:
                assert count_flops(arch, 32) <= int(limit["flops"])
            if "latency" in kinds:
                assert table_latency(table, arch) <= limit["latency"] * (1 + 1e-12)
            checked += 1
    assert checked > 500 and infeasible < 12, (checked, infeasible)


def test_budget_at_the_minimum_returns_only_minimal_architectures(space6):
    budget = ParamBudget(max_params=int(ParamBudget(max_params=1).minimum(space6)))
    # 2 of 8 options per layer are smallest: 64 feasible architectures of 262144, beyond rejection sampling
    result = RandomSearch(
        space6,
        Objective("n", lambda a: 0.0),
        RandomSearchConfig(generations=10, population=10, max_tries=10),
        [budget],
    ).search(progress=False)
    assert result.evaluations == 64 and result.stop_reason == "exhausted"
    assert {count_params(r.architecture) for r in result.records} == {budget.max_params}


def test_unmeetable_budget_is_rejected_before_search(space6):
    with pytest.raises(
        ConstraintError,
        match=r"params <= 1,000 \(head=none\) cannot be met in space 'synthetic-6': its smallest architecture already has 26,976",
    ):
        EvolutionarySearch(space6, Objective("n", lambda a: 0.0), SMALL, [ParamBudget(max_params=1000)])
    with pytest.raises(ConstraintError, match="FLOPs <= 10 at seq_len=8"):
        RandomSearch(space6, Objective("n", lambda a: 0.0), constraints=[FlopBudget(max_flops=10, seq_len=8)])


def test_jointly_unmeetable_budgets_fail_with_a_clear_error(space6, make_table):
    # latency table where every block's latency falls as its parameter count rises: the smallest
    # model is the slowest, so a tight budget on both cannot be met by any architecture
    from elm_space import layer_params

    table = make_table(space6, 0)
    h = space6.backbone.hidden_size
    sizes = {(o.kind, o.ffn_width, o.heads, o.inner_size): layer_params(o, h) for o in space6.options(0)}
    blocks = tuple(
        b.model_copy(update={"ms": 10_000.0 / sizes[(b.kind, b.ffn_width, b.heads, b.inner_size)]})
        for b in table.blocks
    )
    predictor = LatencyPredictor(table=table.model_copy(update={"blocks": blocks}))
    params = ParamBudget(max_params=int(ParamBudget(max_params=1).minimum(space6)) + 600)
    latency = LatencyBudget(
        max_ms=LatencyBudget(max_ms=1, predictor=predictor).minimum(space6) + 0.1, predictor=predictor
    )
    assert not jointly_feasible(space6, [params, latency])
    search = RandomSearch(
        space6, Objective("n", lambda a: 0.0), RandomSearchConfig(max_tries=10), [params, latency]
    )
    with pytest.raises(
        ConstraintError,
        match="was found in 20 tries; each constraint alone can be met, so together they are too tight",
    ):
        search.search(progress=False)


def test_latency_table_must_cover_the_space(space6, make_table):
    table = make_table(space6, 0)
    partial = table.model_copy(update={"blocks": table.blocks[1:]})
    with pytest.raises(LatencyTableError, match="lacks 1 block shape"):
        RandomSearch(
            space6,
            Objective("n", lambda a: 0.0),
            constraints=[LatencyBudget(max_ms=100, predictor=LatencyPredictor(table=partial))],
        )


def test_space_param_budget_is_the_default_constraint():
    space = preset("demo")
    assert space.param_budget is not None
    default = RandomSearch(space, Objective("n", lambda a: 0.0))
    assert default.constraints == (ParamBudget(max_params=space.param_budget),)
    assert RandomSearch(space, Objective("n", lambda a: 0.0), constraints=()).constraints == ()
