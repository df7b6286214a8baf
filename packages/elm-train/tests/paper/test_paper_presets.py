"""The paper presets end to end, on local stand-ins for their hub data and teacher.

Each test runs one preset's whole stage sequence with the preset's own settings except: the hub
ids are pointed at local stand-ins of the same shape (``hub_mirrors``; the config keeps the ids), the
space is shrunk (same structure, test widths, two layers) and step counts and search sizes are cut
to a few. Everything goes through the hub route: ``data.sources`` by hub id, the GLUE task specs' hub
datasets (MNLI's matched and mismatched splits, STS-B's scores, test splits without labels), a
teacher named by id. elm-small also fine-tunes and distils both SQuAD tasks (``rajpurkar/squad``
and ``rajpurkar/squad_v2`` by id, with the preset's SQuAD settings). It ends with the GLUE
submission files and the report.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

import elm_eval
from elm_space import SearchSpace
from elm_train.config import RunConfig, merge_configs
from elm_train.pipeline import STAGE_NAMES, Run, run_all, stages
from elm_train.pipeline.plan import make_plan
from elm_train.presets import preset

from .conftest import (
    BOOKCORPUS,
    GLUE,
    GLUE_CONFIGS,
    SQUAD,
    SQUAD_ROWS,
    SQUAD_V2,
    TEACHER,
    WIKIPEDIA,
    PaperHub,
    glue_rows,
    shrunk_space,
)

pytestmark = [pytest.mark.paper, pytest.mark.slow]

PAPER = ("elm-small", "elm-tiny", "elm-micro")

GLUE_FILE_TASKS = {
    "CoLA": "cola",
    "SST-2": "sst2",
    "MRPC": "mrpc",
    "STS-B": "stsb",
    "QQP": "qqp",
    "MNLI-m": "mnli",
    "MNLI-mm": "mnli",
    "AX": "mnli",
    "QNLI": "qnli",
    "RTE": "rte",
    "WNLI": "wnli",
}
"""The files the paper's nine tasks predict, and the task behind each."""
TEST_SPLIT = {
    "MNLI-m": ("mnli", "test_matched"),
    "MNLI-mm": ("mnli", "test_mismatched"),
    "AX": ("ax", "test"),
}


def cut(name: str, hub: PaperHub, layers: int) -> dict[str, Any]:
    """What the test changes of preset ``name``: mirrors for the hub ids, the shrunk space, and
    step counts and search sizes cut to a few. Every other setting is the preset's."""
    teacher_layers = 2 * 12 // layers  # the teacher keeps the preset's teacher-to-student layer ratio
    vocab = len(AutoTokenizer.from_pretrained(hub.teachers[teacher_layers]))
    few = {"epochs": 1, "max_steps_per_epoch": 1}
    return {
        "hub_mirrors": hub.mirrors(teacher_layers),
        "space": shrunk_space(name, vocab).model_dump(mode="json"),
        "data": {"max_train_blocks": 256, "max_valid_blocks": 64},  # one global batch of 64 x 4
        "supernet": {
            "optim": {"epochs": 2, "max_steps_per_epoch": 1},  # growth happens after the first epoch
            "dynamic": {"pca_every": 1},
            "checkpoint_every": 1,
        },
        "search": {
            "generations": 2,
            "population": 4,
            "options": {"parents": 2, "mutations": 1, "crossovers": 1},
            "valid_batches": 1,
        },
        "multitask": {"optim": few},
        "retrain": {"optim": few},
        "tasks": {
            "optim": few,
            "teacher_epochs": 1,
            "per_task": {"cola": {"epochs": 1}},
        },
        "eval": {"latency_repeats": 2},
    }


def _metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_tsv(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


@pytest.mark.precision("bf16")  # as the paper presets train
@pytest.mark.parametrize("name", PAPER)
def test_paper_preset_end_to_end(name: str, paper_hub: PaperHub, tmp_path: Path) -> None:
    paper = preset(name)
    full_space = paper.search_space()
    changes = cut(name, paper_hub, layers=full_space.num_layers)
    if name == "elm-micro":  # the reference's active script: the tasks straight from the multitask supernet
        changes["retrain"]["enabled"] = False
    qa = ["squad", "squad_v2"] if name == "elm-small" else []  # the second benchmark the peers report
    if qa:
        changes["hub_mirrors"].update({hub_id: str(path) for hub_id, path in paper_hub.squad.items()})
        changes["tasks"]["tasks"] = [*paper.tasks.tasks, *qa]
    config = RunConfig.model_validate(merge_configs(paper.model_dump(mode="json"), changes))
    # the hub route, by id: nothing but the mirrors points at the stand-ins
    assert [(s.kind, s.hub_id) for s in config.data.sources] == [("hub", WIKIPEDIA), ("hub", BOOKCORPUS)]
    assert config.teacher.name_or_path == TEACHER
    glue = ["mnli", "qqp", "qnli", "sst2", "cola", "stsb", "mrpc", "rte", "wnli"]
    assert config.task_names == [*glue, *qa]
    assert config.multitask_task_names == glue[:8] and config.fitness_task_names == ["mnli"]
    space = config.search_space()
    assert isinstance(config.space, SearchSpace)
    assert [len(layer) for layer in space.layers] == [len(full_space.layers[0])] * 2
    assert space.backbone.embedding.kind == full_space.backbone.embedding.kind == "factorized"

    planned = {s.name: s for s in make_plan(config).stages}  # before anything runs
    assert all(s.runs for s in planned.values())

    run = Run.open(config, tmp_path / "run")
    messages: list[str] = []
    start = time.perf_counter()
    run_all(run, echo=messages.append)
    seconds = time.perf_counter() - start
    print(f"{name}: {seconds:.1f} s", *messages, sep="\n  ")
    assert all(run.is_done(stage) for stage in STAGE_NAMES)
    layout = run.layout

    # data: Wikipedia's text column, one global batch of blocks, the held-out 5% of documents
    data = run.done_info("data")
    assert data["splits"]["train"]["blocks"] == 256
    assert data["splits"]["train"]["tokens"] == 256 * config.data.block_size
    assert 0 < data["splits"]["validation"]["blocks"] <= 64
    assert data["tokenizer"] == TEACHER  # the teacher's own tokenizer, named by its id

    # teacher by id: loaded from its local copy
    teacher = run.done_info("teacher")
    assert teacher["source"] == str(paper_hub.teachers[2 * 12 // full_space.num_layers])

    # supernet: bf16 under DeepSpeed, two steps, growth after the first epoch
    supernet = run.done_info("supernet")
    assert supernet["steps"] == 2 and planned["supernet"].steps == "2"
    assert supernet["grown_pairs"] > 0  # the dynamic dimension ran at the end of the first epoch
    assert planned["search"].steps == "<= 8 paths" and run.done_info("search")["evaluations"] <= 8
    # the search scores paths on MNLI's held-out rows alone (4 of its 40 training rows)
    assert run.done_info("search")["task_examples"] == {"mnli": 4}
    assert planned["search"].notes[0].startswith("each path scored on 4 held-out rows of mnli")

    # retraining: from the multitask supernet by hidden-state KD alone, on unmasked blocks; or none
    retrained = run.done_info("retrain")
    assert {s["init"] for n, s in retrained.items() if n in ("found", "baseline")} == {"multitask"}
    retrain_steps = [r for r in _metrics(layout.metrics) if r.get("stage", "").startswith("retrain.")]
    if config.retrain.enabled:
        assert planned["retrain"].steps == "2 x 1" and retrained["found"]["steps"] == 1
        assert retrain_steps and not any("lm" in r for r in retrain_steps)  # no masked-LM loss computed
    else:
        assert planned["retrain"].steps == "-" and retrained["found"]["steps"] == 0 and not retrain_steps
    assert run.done_info("evaluate")["perplexity"].startswith("not measured")  # no LM head was trained

    # tasks: the teacher and both students on each of the eight GLUE tasks, from the hub layout
    tasks = run.done_info("tasks")
    assert sorted(tasks) == sorted([*config.task_names, "mnli-mm"])
    students = list(stages.retrain.students(run))
    assert students == ["found", "baseline"]
    for task, scores in tasks.items():
        assert set(scores) == {"teacher", *students}, task
        for who in scores:
            result = elm_eval.load_result(layout.results / f"task-{task}-{who}.json")
            if task in qa:  # EM and F1 on the stand-in's validation questions, by evaluate's squad metrics
                assert result.metric == task and result.score == result.validation_metrics["f1"]
                assert result.num_train_examples == SQUAD_ROWS["train"]
                assert result.num_validation_examples == SQUAD_ROWS["validation"]
                em = result.validation_metrics["exact_match" if task == "squad" else "exact"]
                assert 0 <= em <= result.score <= 100, (task, who)
                if task == "squad_v2":
                    assert result.validation_metrics["NoAns_total"] > 0
                if who != "teacher":  # distilled from the fine-tuned teacher, as the reference
                    assert result.settings["kd"] == "soft_ce on start and end logits", (task, who)
                    assert result.settings["epochs"] == 10 and result.settings["lr"] == 1e-4  # the preset's
                continue
            assert result.num_train_examples == glue_rows("train")
            split = {"mnli": "validation_matched", "mnli-mm": "validation_mismatched"}.get(task, "validation")
            assert result.num_validation_examples == glue_rows(split), (task, who)
            if task == "mnli-mm":  # the model chosen on the matched set, scored on the mismatched one
                matched = elm_eval.load_result(layout.results / f"task-mnli-{who}.json")
                assert result.settings["best_step"] == matched.settings["best_step"]
                assert result.settings["validation_split"] == "validation_mismatched"
    # every model is compared at one precision: the bf16 runs export fp32 weights, as the teacher's
    for student in students:
        exported = json.loads(
            (stages.retrain.students(run)[student]["model_dir"] / "config.json").read_text()
        )
        assert exported["dtype"] == "float32", student
    for who in ("teacher", *students):
        latency = json.loads((layout.results / f"latency-{who}.json").read_text())
        assert latency["parameter_bytes"] >= 4 * latency["num_parameters"], who  # bf16 would be 2 bytes
    stsb = elm_eval.load_result(layout.results / "task-stsb-found.json")
    assert stsb.metric == "pearson_spearman" and "mse to gold" in str(stsb.settings["kd"])

    # GLUE submission files: every file of the nine tasks, whole test splits, the server's labels
    for student in students:
        folder = layout.glue_submission_dir(student)
        assert sorted(p.stem for p in folder.glob("*.tsv")) == sorted(GLUE_FILE_TASKS)
        for stem, task in GLUE_FILE_TASKS.items():
            config_name, split = TEST_SPLIT.get(stem, (task, "test"))
            rows = read_tsv(folder / f"{stem}.tsv")
            assert rows[0] == ["index", "prediction"], stem
            assert [int(i) for i, _ in rows[1:]] == list(range(glue_rows(split))), stem
            labels = GLUE_CONFIGS[config_name].labels
            predictions = [p for _, p in rows[1:]]
            if labels is None:
                assert all(0.0 <= float(p) <= 5.0 for p in predictions), stem
            elif stem in ("MNLI-m", "MNLI-mm", "AX", "QNLI", "RTE"):
                assert set(predictions) <= set(labels), stem
            else:
                assert set(predictions) <= {"0", "1"}, stem
        record = json.loads(layout.glue_submission_record(student).read_text())
        assert set(record) == set(glue)  # SQuAD has no GLUE submission file
        assert all(entry["missing"] == {} for entry in record.values())

    # the plan made before the run: its step counts are the run's, its disk the right size
    task_steps = sum(
        len(json.loads(layout.task_loss_curve(task, who).read_text()))  # mnli-mm trains nothing
        for task in config.task_names
        for who in ("teacher", *students)
    )
    assert planned["tasks"].steps == f"{task_steps:,}"
    used = sum(p.stat().st_size for p in layout.root.rglob("*") if p.is_file())
    estimate = sum(s.disk or 0 for s in planned.values())
    assert 0.5 < estimate / used < 2, (estimate, used)

    # the report: every stage, the teacher by id, each task's scores
    report = json.loads(layout.report_json.read_text())
    assert set(report["stages"]) == set(STAGE_NAMES) - {"report"}
    markdown = layout.report_markdown.read_text()
    assert (
        f"teacher: `{TEACHER}`" in markdown
        and f"corpus: `{WIKIPEDIA} 20231101.en + {BOOKCORPUS}`" in markdown
    )
    assert "hub ids read from local copies, not from the hub" in markdown  # a stand-in run says so
    assert f"`{GLUE}` from `{paper_hub.glue}`" in markdown
    for hub_id in (SQUAD, SQUAD_V2) if qa else ():
        assert f"`{hub_id}` from `{paper_hub.squad[hub_id]}`" in markdown
    for task in [*config.task_names, "mnli-mm"]:
        assert task in markdown, task
    assert f"Route: {config.retrain.route()}." in markdown
