import re

import pytest
from pydantic import ValidationError

from elm_search import (
    EvolutionarySearch,
    EvolutionConfig,
    Objective,
    RandomSearch,
    RandomSearchConfig,
    dominates,
    param_objective,
)
from elm_space import count_params, embedding_params, layer_params


@pytest.mark.slow
def test_evolution_finds_the_optimum_far_more_often_than_random_search(make_space, make_problem):
    # 8 layers x 8 options: 16.7M architectures, so 800 random draws find the optimum with
    # probability about 5e-5 per seed; evolution has to exploit the structure to find it
    space = make_space(8)
    budget = 800
    evo_hits = random_hits = 0
    for seed in range(20):
        problem = make_problem(space, 1000 + seed)
        optimum = problem.optimum()
        objective = Objective("score", problem)
        evo = EvolutionarySearch(
            space,
            objective,
            EvolutionConfig(
                seed=seed,
                generations=100,
                max_evaluations=budget,
                population=40,
                parents=8,
                mutations=20,
                crossovers=15,
                mutation_prob=0.12,
            ),
        ).search(progress=False)
        rnd = RandomSearch(
            space, objective, RandomSearchConfig(seed=seed, generations=100, max_evaluations=budget)
        ).search(progress=False)
        assert evo.evaluations == rnd.evaluations == budget
        assert evo.best.values["score"] <= optimum + 1e-9 and rnd.best.values["score"] <= optimum + 1e-9
        evo_hits += abs(evo.best.values["score"] - optimum) < 1e-9
        random_hits += abs(rnd.best.values["score"] - optimum) < 1e-9
    assert evo_hits >= 12, (evo_hits, random_hits)
    assert evo_hits - random_hits >= 10, (evo_hits, random_hits)


def test_generations_are_built_as_configured(space6, make_problem):
    config = EvolutionConfig(seed=3, generations=4, population=20, parents=5, mutations=8, crossovers=6)
    result = EvolutionarySearch(space6, Objective("score", make_problem(space6, 0)), config).search(
        progress=False
    )
    by_generation = [[r for r in result.records if r.generation == g] for g in range(4)]
    assert [len(g) for g in by_generation] == [20, 20, 20, 20]
    assert {r.origin for r in by_generation[0]} == {"random"}
    for gen in by_generation[1:]:
        origins = [r.origin for r in gen]
        assert origins == ["mutation"] * 8 + ["crossover"] * 6 + ["random"] * 6
    # every architecture distinct, and the genome really encodes the architecture
    assert len({r.hash for r in result.records}) == 80
    for r in result.records:
        assert [space6.options(i)[g] for i, g in enumerate(r.genome)] == list(r.architecture.layers)


def test_children_come_from_the_elite(space6, make_problem):
    """A mutation child differs from some parent of the previous elite; a crossover child takes
    every gene from one of two parents."""
    problem = make_problem(space6, 1)
    config = EvolutionConfig(
        seed=0, generations=2, population=20, parents=4, mutations=8, crossovers=8, mutation_prob=0.2
    )
    result = EvolutionarySearch(space6, Objective("score", problem), config).search(progress=False)
    first = sorted((r for r in result.records if r.generation == 0), key=lambda r: -r.values["score"])
    elite = [r.genome for r in first[:4]]
    for child in (r for r in result.records if r.generation == 1):
        if child.origin == "crossover":
            assert any(
                all(c in (a[i], b[i]) for i, c in enumerate(child.genome))
                for a in elite
                for b in elite
                if a != b
            )
        if child.origin == "mutation":
            assert min(sum(x != y for x, y in zip(child.genome, p, strict=True)) for p in elite) >= 1


def test_best_score_never_decreases_and_matches_records(space6, make_problem):
    result = EvolutionarySearch(
        space6,
        Objective("score", make_problem(space6, 2)),
        EvolutionConfig(generations=5, population=20, parents=4, mutations=8, crossovers=8),
    ).search(progress=False)
    bests = [g.best for g in result.generations]
    assert bests == sorted(bests)
    assert bests[-1] == max(r.values["score"] for r in result.records) == result.best.values["score"]


def test_minimised_objective_reaches_the_smallest_architecture(space6):
    # parameters add up per layer, so the smallest architecture takes each layer's cheapest option
    h = space6.backbone.hidden_size
    smallest = embedding_params(space6.backbone) + sum(
        min(layer_params(o, h) for o in space6.options(i)) for i in range(space6.num_layers)
    )
    result = EvolutionarySearch(
        space6,
        param_objective(),
        EvolutionConfig(generations=10, population=20, parents=4, mutations=10, crossovers=6),
    ).search(progress=False)
    assert result.best.values["params"] == min(r.params for r in result.records) == smallest


def test_multi_objective_front_is_the_non_dominated_set(space6, make_problem):
    problem = make_problem(space6, 4)
    objectives = [Objective("score", problem), param_objective()]
    result = EvolutionarySearch(
        space6,
        objectives,
        EvolutionConfig(generations=4, population=20, parents=6, mutations=8, crossovers=6),
    ).search(progress=False)
    points = {r.hash: (-r.values["score"], r.values["params"]) for r in result.records}
    expected = {h for h, p in points.items() if not any(dominates(q, p) for q in points.values())}
    assert {r.hash for r in result.pareto_front} == expected
    assert [r.values["params"] for r in result.pareto_front] == sorted(
        r.values["params"] for r in result.pareto_front
    )
    for r in result.records:
        assert r.values["params"] == count_params(r.architecture)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"population": 10, "parents": 10}, "population=10 must be larger than parents=10"),
        ({"population": 5, "parents": 8, "mutations": 2, "crossovers": 2}, "must be larger than parents=8"),
        ({"mutation_prob": 1.5}, "mutation_prob"),
        ({"mutation_prob": -0.1}, "mutation_prob"),
        ({"crossover_prob": 2.0}, "crossover_prob"),
        (
            {"population": 30, "mutations": 20, "crossovers": 20},
            "mutations + crossovers = 40 exceeds population=30",
        ),
        ({"parents": 1, "crossovers": 5}, "crossovers=5 need at least 2 parents"),
        ({"generations": 0}, "generations"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_invalid_settings_are_rejected_with_clear_messages(settings, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        EvolutionConfig(**settings)


def test_objective_names_must_be_unique(space3):
    with pytest.raises(ValueError, match="objective names must be unique"):
        EvolutionarySearch(space3, [param_objective(), param_objective()])


def test_non_finite_fitness_is_reported_with_the_architecture(space3):
    with pytest.raises(ValueError, match=r"objective 'score' returned nan for architecture \d+:[BM]"):
        RandomSearch(space3, Objective("score", lambda arch: float("nan"))).search(progress=False)
