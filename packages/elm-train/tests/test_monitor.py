"""Live monitoring: a tiny run with ``monitor.tensorboard`` on leaves TensorBoard event files that
TensorBoard's own reader opens, holding the engine's loss and learning rate, every KD term the
supernet logged, the sampled path's size, growth and the search's fitness per generation."""

from __future__ import annotations

import json

import pytest

from elm_train.config import MonitorConfig, RunConfig, TeacherConfig
from elm_train.pipeline import Run, run_stage
from elm_train.presets import preset
from elm_train.runtime.monitor import LOSS_TAG

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _scalars(directory) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(directory), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_engine_kd_and_search_curves(tmp_path, tiny_teacher_dir):
    config = preset("tiny").model_copy(
        update={
            "teacher": TeacherConfig(name_or_path=str(tiny_teacher_dir)),
            "monitor": MonitorConfig(tensorboard=True, csv=True),
        }
    )
    run = Run.open(RunConfig.model_validate(config.model_dump()), tmp_path / "run")
    run_stage(run, "search", echo=lambda _: None)
    board = run.layout.monitor_dir / "tensorboard"
    supernet = _scalars(board / "supernet")
    logged = [r for r in run.metrics.read("supernet") if "step" in r and "loss" in r]
    steps = [r["step"] for r in logged]
    assert len(logged) == 12  # 2 epochs x 6 steps of the tiny preset
    # the engine's own monitor: DeepSpeed writes lr, the loop writes the loss there, by samples
    assert len(supernet["Train/Samples/lr"]) == len(logged)
    assert [round(v, 5) for _, v in supernet[LOSS_TAG]] == [round(r["loss"], 5) for r in logged]
    # every number the supernet logged per step (each KD term, the path size) is a curve by step
    terms = {k for r in logged for k, v in r.items() if isinstance(v, float)} - {"lr", "time"}
    assert {"path_params", "loss"} <= terms
    assert len(terms - {"path_params", "loss"}) >= 3  # hidden-state KD: embeddings, attention, layers
    for term in terms:
        curve = supernet[f"supernet/{term}"]
        assert [s for s, _ in curve] == steps
        assert [round(v, 4) for _, v in curve] == [round(float(r[term]), 4) for r in logged]
    grown = [r for r in run.metrics.read("supernet") if r.get("event") == "epoch_end"]
    assert [v for _, v in supernet["supernet/growth/pairs_grown"]] == [len(r["grown"]) for r in grown]
    # the search: best and mean fitness of each generation, as the saved result says
    result = json.loads(run.layout.search_result.read_text())
    search = _scalars(board / "search")
    fitness = run.done_info("search")["fitness"]
    generations = result["generations"]
    assert [(s, round(v, 4)) for s, v in search["search/best_fitness"]] == [
        (g["generation"], round(g["best"], 4)) for g in generations
    ]
    for g in generations:
        values = [r["values"][fitness] for r in result["records"] if r["generation"] == g["generation"]]
        mean = dict(search["search/mean_fitness"])[g["generation"]]
        assert mean == pytest.approx(sum(values) / len(values), rel=1e-5)
    # the CSV writer got the same series (DeepSpeed's csv_monitor: one file per tag)
    assert (run.layout.monitor_dir / "csv" / "supernet" / "Train_Samples_train_loss.csv").is_file()
