"""Result files round-trip; reports hold the right rows; plots are real PNGs; Pareto front is exact."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest

from elm_eval.errors import ElmEvalError
from elm_eval.report import load_result, summarize, write_report, write_result
from elm_eval.results import LatencyEntry, LatencyResult, LatencyStats, LMResult, TaskResult


def _latency(model: str, params: int, median: float) -> LatencyResult:
    stats = LatencyStats(
        median_ms=median, mean_ms=median, std_ms=0.0, min_ms=median, max_ms=median, repeats=3, warmup=1,
        device="cpu", num_threads=2,
    )  # fmt: skip
    return LatencyResult(
        model=model,
        device="cpu",
        num_threads=2,
        num_parameters=params,
        parameter_bytes=4 * params,
        peak_memory_method="test",
        entries=[
            LatencyEntry(batch_size=1, seq_length=32, stats=stats, peak_memory_bytes=1000),
            LatencyEntry(
                batch_size=8, seq_length=32, stats=stats.model_copy(update={"median_ms": 4 * median})
            ),
        ],
    )


def _task(model: str, task: str, score: float, params: int) -> TaskResult:
    return TaskResult(
        model=model,
        task=task,
        metric="accuracy",
        score=score,
        validation_metrics={"accuracy": score},
        num_parameters=params,
        num_train_examples=10,
        num_validation_examples=5,
        train_loss_curve=[1.0, 0.7, 0.5],
    )


def test_results_round_trip_through_json_and_markdown(tmp_path: Path) -> None:
    results = [
        LMResult(
            model="m",
            objective="masked-lm",
            loss=2.0,
            perplexity=7.389,
            num_scored_tokens=10,
            num_sequences=2,
        ),
        _task("m", "sst2", 0.8125, 1234),
        _latency("m", 1000, 2.5),
        _task("m", "stsb", float("nan"), 1234),
    ]
    for result in results:
        json_path, md_path = write_result(result, tmp_path)
        assert load_result(json_path).model_dump_json() == result.model_dump_json()  # NaN compares as text
        assert md_path.read_text().startswith("## ")
    nan_back = load_result(tmp_path / "task-stsb-m.json")
    assert nan_back.score != nan_back.score  # NaN survives the round trip
    assert "| m | sst2 | accuracy | 0.8125 |" in (tmp_path / "task-sst2-m.md").read_text()
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "latency-m.json", "lm-masked-lm-m.json", "task-sst2-m.json", "task-stsb-m.json"
    ]  # fmt: skip


def test_summary_groups_by_model_and_averages_tasks() -> None:
    rows = summarize(
        [
            _task("a", "sst2", 0.8, 900),
            _task("a", "rte", 0.6, 900),
            _latency("a", 800, 3.0),
            _task("b", "sst2", 0.9, 50),
        ],
        latency_at=(8, 32),
    )
    first, second = rows
    assert first.model == "a" and first.mean_task_score == pytest.approx(0.7)
    assert first.num_parameters == 800 and first.latency_ms == 12.0 and first.latency_at == (8, 32)
    assert second.num_parameters == 50 and second.latency_ms is None


def test_report_writes_tables_and_png_plots(tmp_path: Path) -> None:
    results = []
    for name, params, latency, score in [
        ("small", 1e5, 1.0, 0.70),
        ("mid", 5e5, 2.0, 0.80),
        ("bad", 6e5, 3.0, 0.75),
    ]:
        results += [_task(name, "sst2", score, int(params)), _latency(name, int(params), latency)]
    files = write_report(results, tmp_path, loss_curves={"supernet": [3.0, 2.0, 1.5]})
    summary = json.loads(files.summary_json.read_text())
    assert [row["model"] for row in summary] == ["small", "mid", "bad"]
    table = files.summary_markdown.read_text()
    assert "| mid | 500,000 | 2.000 | 0.8000 | 0.8000 | - |" in table
    for path in (files.score_vs_params, files.score_vs_latency, files.loss_curves):
        assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(path).shape[0] > 100


def test_lm_only_report_places_models_by_perplexity(tmp_path: Path) -> None:
    results = [
        LMResult(
            model="x", objective="causal-lm", loss=3.0, perplexity=20.09, num_scored_tokens=9, num_sequences=1
        ),
        _latency("x", 100, 1.0),
    ]
    files = write_report(results, tmp_path)
    assert files.score_vs_params is not None and files.loss_curves is None
    assert json.loads(files.summary_json.read_text())[0]["perplexity"] == pytest.approx(20.0855, rel=1e-4)


def test_report_errors(tmp_path: Path) -> None:
    with pytest.raises(ElmEvalError, match="no results"):
        write_report([], tmp_path)
    with pytest.raises(ElmEvalError, match="not found"):
        load_result(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"kind": "weather"}')
    with pytest.raises(ElmEvalError, match="not an elm-eval result file"):
        load_result(tmp_path / "other.json")
    with pytest.raises(KeyError, match="no latency entry for batch 2 x seq 2"):
        _latency("m", 1, 1.0).entry(2, 2)
