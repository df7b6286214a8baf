"""The tasks stage with both SQuAD tasks, end to end at tiny size: ``rajpurkar/squad`` and
``rajpurkar/squad_v2`` read from local stand-ins in the hub's layout (``hub_mirrors``), a teacher
fine-tuned and every retrained student distilled from it, results, model cards and the plan."""

from __future__ import annotations

import json

import datasets
import pytest
from transformers import AutoModelForQuestionAnswering

import elm_eval
from elm_eval.qa_standin import write_hub_copy
from elm_train.config import RunConfig, merge_configs
from elm_train.models.model_card import read_metadata
from elm_train.pipeline import Run, run_stage, stages
from elm_train.pipeline.plan import format_plan, make_plan
from elm_train.presets import preset


@pytest.mark.slow
def test_a_tiny_run_fine_tunes_and_distils_both_squad_tasks(tmp_path, tiny_teacher_dir, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    mirrors = {
        "rajpurkar/squad": str(write_hub_copy(tmp_path / "squad", "v1", 40, 12)),
        "rajpurkar/squad_v2": str(write_hub_copy(tmp_path / "squad_v2", "v2", 40, 12)),
    }
    fields = merge_configs(
        preset("tiny").model_dump(mode="json"),
        {
            "teacher": {"name_or_path": str(tiny_teacher_dir)},
            "hub_mirrors": mirrors,
            "tasks": {
                "tasks": ["squad", "squad_v2"],
                "qa": {"max_seq_length": 32, "doc_stride": 8, "max_query_length": 8},
                "per_task": {"squad": {"epochs": 1, "lr": 1e-3}},
            },
        },
    )
    config = RunConfig.model_validate(fields)
    plan = format_plan(make_plan(config))
    for hub_id, copy in mirrors.items():
        assert f"{hub_id}: nothing, read from the local copy {copy}" in plan
    run = Run.open(config, tmp_path / "run")
    run_stage(run, "tasks")
    results = [elm_eval.load_result(p) for p in sorted(run.layout.results.glob("*.json"))]
    tasks = {(r.task, r.model): r for r in results if r.kind == "task"}
    students = list(stages.retrain.students(run))
    assert set(tasks) == {(t, m) for t in ("squad", "squad_v2") for m in ["teacher", *students]}
    for (task, who), result in tasks.items():
        assert result.metric == task and result.score == result.validation_metrics["f1"]
        assert 0.0 <= result.score <= 100.0
        assert result.num_train_examples == 40 and result.num_validation_examples == 12
        selection = json.loads(run.layout.task_selection(task, who).read_text())
        assert result.score == max(e["score"] for e in selection["evaluations"])  # the best dev checkpoint
        model = AutoModelForQuestionAnswering.from_pretrained(run.layout.task_model(task, who))
        assert type(model).__name__ == (
            "BertForQuestionAnswering" if who == "teacher" else "ElmForQuestionAnswering"
        )
        if who == "teacher":
            assert result.settings["kd"] == "none"
            continue
        assert result.settings["kd"] == "soft_ce on start and end logits" and result.settings["epochs"] == (
            1 if task == "squad" else config.tasks.optim.epochs
        )
        header = read_metadata(run.layout.task_model(task, who) / "README.md")
        assert header["pipeline_tag"] == "question-answering"
        results_ = header["model-index"][0]["results"]
        metrics = {m["type"]: m["value"] for r in results_ for m in r["metrics"]}
        em = result.validation_metrics["exact_match" if task == "squad" else "exact"]
        assert metrics["f1"] == result.score and metrics["exact_match"] == em
    assert tasks[("squad_v2", students[0])].validation_metrics["NoAns_total"] > 0


def test_the_plan_sizes_squad_from_its_documented_splits():
    fields = merge_configs(
        preset("tiny").model_dump(mode="json"),
        {
            "tasks": {
                "tasks": ["squad_v2"],
                "max_train_examples": None,
                "qa": {"max_seq_length": 32, "doc_stride": 8, "max_query_length": 8},
            }
        },
    )
    plan = format_plan(make_plan(RunConfig.model_validate(fields)))
    assert "rajpurkar/squad_v2: 142,192 rows" in plan  # 130,319 train + 11,873 validation questions
    assert "squad_v2: 130,319 training examples (documented; windows: more)" in plan


def test_qa_tasks_are_checked_when_the_config_is():
    from elm_train.config import ConfigError

    base = preset("tiny").model_dump(mode="json")
    with pytest.raises(
        (ValueError, ConfigError), match="tasks.qa.max_seq_length=384 is longer than the models' 32"
    ):
        RunConfig.model_validate(merge_configs(base, {"tasks": {"tasks": ["squad"]}}))
    with pytest.raises((ValueError, ConfigError), match="unknown task 'squad3'"):
        RunConfig.model_validate(merge_configs(base, {"tasks": {"tasks": ["squad3"]}}))
    ok = RunConfig.model_validate(
        merge_configs(
            base,
            {
                "multitask": {"enabled": False},
                "tasks": {
                    "tasks": ["SQuAD-v2", "tweet-sentiment"],
                    "qa": {"max_seq_length": 32, "doc_stride": 8, "max_query_length": 8},
                    "per_task": {"squad_v2": {"epochs": 10, "lr": 1e-4}},
                },
            },
        )
    )
    assert ok.tasks.for_task("SQuAD-v2").epochs == 10 and ok.multitask_task_names == ["tweet-sentiment"]
