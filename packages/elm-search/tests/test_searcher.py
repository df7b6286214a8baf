import json

import pytest

from elm_search import (
    EvolutionarySearch,
    EvolutionConfig,
    Objective,
    ParamBudget,
    RandomSearch,
    RandomSearchConfig,
    SearchResult,
    SearchStateError,
    param_objective,
)

CONFIG = EvolutionConfig(seed=7, generations=6, population=16, parents=4, mutations=6, crossovers=5)


class Crash(RuntimeError):
    pass


def crash_after(problem, n):
    """The problem's fitness, raising on call number n (as a killed evaluation would)."""
    calls = [0]

    def fitness(arch):
        calls[0] += 1
        if calls[0] == n:
            raise Crash(f"evaluation {n} failed")
        return problem(arch)

    return fitness


@pytest.mark.parametrize("multi", [False, True])
def test_stop_after_and_resume_equals_uninterrupted_run(space6, make_problem, tmp_path, multi):
    problem = make_problem(space6, 11)
    objectives = [Objective("score", problem), param_objective()] if multi else Objective("score", problem)
    constraints = [ParamBudget(max_params=40_000)]
    whole = EvolutionarySearch(space6, objectives, CONFIG, constraints).search(
        tmp_path / "whole.json", progress=False
    )

    part = EvolutionarySearch(space6, objectives, CONFIG, constraints).search(
        tmp_path / "part.json", stop_after=2, progress=False
    )
    assert not part.finished and part.stop_reason == "stop_after" and len(part.generations) == 2
    assert part.records == whole.records[: len(part.records)]
    again = EvolutionarySearch(space6, objectives, CONFIG, constraints).search(
        tmp_path / "part.json", stop_after=1, resume=True, progress=False
    )
    assert len(again.generations) == 3
    resumed = EvolutionarySearch(space6, objectives, CONFIG, constraints).search(
        tmp_path / "part.json", resume=True, progress=False
    )

    assert resumed.finished and resumed.stop_reason == "generations"
    assert resumed.model_dump() == whole.model_dump()
    assert json.loads((tmp_path / "part.json").read_text()) == json.loads(
        (tmp_path / "whole.json").read_text()
    )


def test_crash_mid_generation_then_resume_equals_uninterrupted_run_without_repeating_work(
    space6, make_problem, tmp_path
):
    problem = make_problem(space6, 12)
    whole = EvolutionarySearch(space6, Objective("score", problem), CONFIG).search(progress=False)
    assert len(problem.calls) == whole.evaluations

    problem = make_problem(space6, 12)
    path = tmp_path / "state.json"
    crashing = Objective("score", crash_after(problem, 40))  # generation 2 (index), 8th candidate
    with pytest.raises(Crash, match="evaluation 40 failed"):
        EvolutionarySearch(space6, crashing, CONFIG).search(path, progress=False)
    saved = json.loads(path.read_text())
    assert saved["generation"] == 2 and len(saved["records"]) == 32 and len(saved["pending"]) == 7
    before = len(problem.calls)

    resumed = EvolutionarySearch(space6, Objective("score", problem), CONFIG).search(
        path, resume=True, progress=False
    )
    assert resumed.model_dump() == whole.model_dump()
    # the 39 evaluations done before the crash (7 of them pending) are not repeated
    assert before == 39
    assert len(problem.calls) == len(set(problem.calls)) == whole.evaluations


def test_random_search_resumes_exactly(space6, make_problem, tmp_path):
    problem = make_problem(space6, 13)
    config = RandomSearchConfig(seed=2, generations=5, population=9)
    whole = RandomSearch(space6, Objective("score", problem), config).search(progress=False)
    RandomSearch(space6, Objective("score", problem), config).search(
        tmp_path / "s.json", stop_after=3, progress=False
    )
    resumed = RandomSearch(space6, Objective("score", problem), config).search(
        tmp_path / "s.json", resume=True, progress=False
    )
    assert resumed == whole


def test_every_architecture_is_evaluated_once(space3, make_problem):
    # 64 architectures in the space: the search exhausts it and must stop, never repeating one
    problem = make_problem(space3, 3)
    second = param_objective()
    counted = []
    objectives = [
        Objective("score", problem),
        Objective("params", lambda a: counted.append(1) or second(a), maximize=False),
    ]
    config = EvolutionConfig(generations=50, population=12, parents=3, mutations=5, crossovers=4)
    result = EvolutionarySearch(space3, objectives, config).search(progress=False)
    assert result.stop_reason == "exhausted" and result.finished
    assert len(problem.calls) == len(set(problem.calls)) == result.evaluations == len(counted) == 512
    assert len({r.hash for r in result.records}) == 512


def test_max_evaluations_cuts_the_last_generation(space6, make_problem):
    problem = make_problem(space6, 5)
    config = CONFIG.model_copy(update={"max_evaluations": 37})
    result = EvolutionarySearch(space6, Objective("score", problem), config).search(progress=False)
    assert result.evaluations == len(problem.calls) == 37
    assert result.stop_reason == "max_evaluations"
    assert [g.new_evaluations for g in result.generations] == [16, 16, 5]
    assert [g.evaluations for g in result.generations] == [16, 32, 37]


def test_same_seed_same_result_different_seed_different_result(space6, make_problem):
    problem = make_problem(space6, 6)
    a = EvolutionarySearch(space6, Objective("score", problem), CONFIG).search(progress=False)
    b = EvolutionarySearch(space6, Objective("score", problem), CONFIG).search(progress=False)
    c = EvolutionarySearch(space6, Objective("score", problem), CONFIG.model_copy(update={"seed": 8})).search(
        progress=False
    )
    assert a == b
    assert [r.hash for r in a.records] != [r.hash for r in c.records]


def test_existing_state_needs_resume(space3, make_problem, tmp_path):
    path = tmp_path / "state.json"
    search = RandomSearch(
        space3, Objective("score", make_problem(space3, 0)), RandomSearchConfig(generations=2, population=4)
    )
    search.search(path, progress=False)
    with pytest.raises(SearchStateError, match="already exists; pass resume=True"):
        search.search(path, progress=False)


def test_resume_with_different_settings_is_refused(space3, make_problem, tmp_path):
    path = tmp_path / "state.json"
    problem = make_problem(space3, 0)
    RandomSearch(space3, Objective("score", problem), RandomSearchConfig(generations=2, population=4)).search(
        path, progress=False
    )
    other = RandomSearch(space3, Objective("score", problem), RandomSearchConfig(generations=3, population=4))
    with pytest.raises(SearchStateError, match="its config differs"):
        other.search(path, resume=True, progress=False)
    with pytest.raises(SearchStateError, match="its algorithm differs"):
        EvolutionarySearch(space3, Objective("score", problem), CONFIG).search(
            path, resume=True, progress=False
        )
    with pytest.raises(SearchStateError, match="its objectives differs"):
        RandomSearch(
            space3,
            Objective("score", problem, maximize=False),
            RandomSearchConfig(generations=2, population=4),
        ).search(path, resume=True, progress=False)


def test_corrupt_state_is_reported(space3, make_problem, tmp_path):
    path = tmp_path / "state.json"
    path.write_text("{not json")
    search = RandomSearch(space3, Objective("score", make_problem(space3, 0)))
    with pytest.raises(SearchStateError, match="is not valid JSON"):
        search.search(path, resume=True, progress=False)
    path.write_text('{"format_version": 99}')
    with pytest.raises(SearchStateError, match="format_version=99"):
        search.search(path, resume=True, progress=False)


def test_state_is_written_atomically_and_result_round_trips(space3, make_problem, tmp_path):
    path = tmp_path / "run" / "state.json"
    result = RandomSearch(
        space3, Objective("score", make_problem(space3, 0)), RandomSearchConfig(generations=2, population=4)
    ).search(path, progress=False)
    assert path.exists() and not (tmp_path / "run" / "state.json.tmp").exists()
    saved = result.save(tmp_path / "result.json")
    assert SearchResult.load(saved) == result


def test_progress_is_logged(space3, make_problem, caplog):
    caplog.set_level("INFO", logger="elm_search")
    RandomSearch(
        space3, Objective("score", make_problem(space3, 0)), RandomSearchConfig(generations=2, population=4)
    ).search(progress=True)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("random generation 0: best score=") and lines[0].endswith("4 evaluations")
    assert lines[1].endswith("8 evaluations")
