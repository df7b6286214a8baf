"""A latency budget: the block table is measured, and no evaluated architecture breaks it."""

import json

import elm_space
from elm_search import LatencyPredictor, SearchResult
from elm_space import SearchSpace
from elm_train.config import SearchStageConfig, TeacherConfig, preset
from elm_train.pipeline import run_stage
from elm_train.run import Run
from elm_train.stages.latency_table import measure_table


def test_search_under_a_binding_latency_budget(tmp_path, tiny_teacher_dir):
    config = preset("tiny").model_copy(update={"teacher": TeacherConfig(name_or_path=str(tiny_teacher_dir))})
    run = Run.open(config, tmp_path / "run")
    for stage in ("data", "teacher", "supernet"):
        run_stage(run, stage, echo=lambda _: None)
    grown = elm_space.load(SearchSpace, run.dir / "supernet" / "final" / "space.json")
    table = measure_table(run, grown)
    assert table.missing(grown) == []  # every block shape the space offers was timed
    assert all(block.ms > 0 for block in table.blocks) and table.embedding_ms > 0
    report = json.loads((run.dir / "search" / "latency_predictor.json").read_text())
    assert report["n"] == 5 and report["mape"] >= 0

    predictor = LatencyPredictor(table=table)
    predicted = sorted(predictor.predict(a) for a in elm_space.sample_many(grown, 200, 0))
    budget = predicted[len(predicted) // 2]  # the median: half of the space is over budget
    search = SearchStageConfig(**{**config.search.model_dump(), "latency_budget_ms": budget})
    budgeted = Run(config.model_copy(update={"search": search}), run.dir)  # same directory, same table
    run_stage(budgeted, "search", echo=lambda _: None)
    result = SearchResult.load(run.dir / "search" / "result.json")
    assert result.records and all(predictor.predict(r.architecture) <= budget for r in result.records)
