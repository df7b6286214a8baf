"""A latency budget: the block table is measured, and no evaluated architecture breaks it."""

import elm_space
from elm_search import LatencyPredictor, SearchResult
from elm_space import SearchSpace
from elm_train.config import SearchStageConfig, TeacherConfig
from elm_train.pipeline import Run, run_stage
from elm_train.presets import preset
from elm_train.search.latency_table import measure_table


def test_search_under_a_binding_latency_budget(tmp_path, tiny_teacher_dir):
    config = preset("tiny").model_copy(update={"teacher": TeacherConfig(name_or_path=str(tiny_teacher_dir))})
    run = Run.open(config, tmp_path / "run")
    for stage in ("data", "teacher", "supernet"):
        run_stage(run, stage, echo=lambda _: None)
    grown = elm_space.load(SearchSpace, run.dir / "supernet" / "final" / "space.json")
    ev = config.eval
    table, report = measure_table(grown, ev.latency_batch_size, ev.latency_seq_len, ev.latency_repeats, 0)
    assert table.missing(grown) == []  # every block shape the space offers was timed
    assert all(block.ms > 0 for block in table.blocks) and table.embedding_ms > 0
    assert report.n == 5 and report.mape >= 0
    run.stage_dir("search")
    table.save(run.layout.latency_table)  # the search stage times nothing it finds here

    predictor = LatencyPredictor(table=table)
    predicted = sorted(predictor.predict(a) for a in elm_space.sample_many(grown, 200, 0))
    budget = predicted[len(predicted) // 2]  # the median: half of the space is over budget
    search = SearchStageConfig(**{**config.search.model_dump(), "latency_budget_ms": budget})
    budgeted = Run(config.model_copy(update={"search": search}), run.dir)  # same directory, same table
    run_stage(budgeted, "search", echo=lambda _: None)
    result = SearchResult.load(run.dir / "search" / "result.json")
    assert result.records and all(predictor.predict(r.architecture) <= budget for r in result.records)
