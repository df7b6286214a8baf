"""The whole pipeline at tiny size, checking what every stage leaves in the run directory."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

import elm_eval
import elm_space
from elm_search import SearchResult
from elm_space import Architecture, SearchSpace
from elm_train.config import TeacherConfig
from elm_train.pipeline import STAGE_NAMES, Run, run_all, stages
from elm_train.presets import preset
from elm_train.search.head_choice import choose_heads, searched_heads
from elm_train.training.batches import eval_batches


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_teacher_dir):
    config = preset("tiny").model_copy(update={"teacher": TeacherConfig(name_or_path=str(tiny_teacher_dir))})
    run = Run.open(config, tmp_path_factory.mktemp("pipeline") / "run")
    messages: list[str] = []
    run_all(run, echo=messages.append)
    return run, messages


def test_every_stage_finished_once(finished):
    run, messages = finished
    assert all(run.is_done(stage) for stage in STAGE_NAMES)
    assert [m for m in messages if m.endswith("running")] == [
        f"[elm-train] {s}: running"
        for s in STAGE_NAMES
        if s != "multitask"  # off in the tiny preset
    ]
    assert run.done_info("multitask") == {}
    again: list[str] = []
    run_all(run, echo=again.append)  # a finished run skips every stage
    assert again == [f"[elm-train] {s}: already done, skipped" for s in STAGE_NAMES]


def test_data_blocks(finished):
    run, _ = finished
    blocks = run.blocks
    assert len(blocks["train"]) == 96 and len(blocks["validation"]) == 16
    assert {len(ids) for ids in blocks["train"]["input_ids"]} == {32}
    assert all(ids[0] == run.tokenizer.cls_token_id for ids in blocks["train"]["input_ids"])
    assert blocks["train"].features["input_ids"].feature.dtype == "uint16"  # a 400-word vocabulary
    # the stage's figures: in done.json and the metrics, the blocks being every split's
    figures = run.done_info("data")["figures"]
    assert figures["blocks"] == sum(len(split) for split in blocks.values())
    assert figures["tokens"] >= 96 * 30 and figures["peak_rss_mb"] > 0 and figures["processes"] >= 1
    logged = [r for r in run.metrics.read("data") if r.get("event") == "blocks_built"]
    assert [r["blocks"] for r in logged] == [figures["blocks"]]


def test_supernet_trained_and_grew(finished):
    run, _ = finished
    info = run.done_info("supernet")
    final = run.dir / "supernet" / "final"
    grown = elm_space.load(SearchSpace, final / "space.json")
    initial = run.initial_space
    widened = [
        (i, j)
        for i, layer in enumerate(grown.layers)
        for j, c in enumerate(layer)
        if c.ffn_width != initial.layers[i][j].ffn_width
    ]
    assert len(widened) == info["grown_pairs"] == 2  # grow_per_epoch=2, after the first of two epochs
    weights = load_file(str(final / "supernet.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    losses = [r["loss"] for r in run.metrics.read("supernet") if "loss" in r]
    assert len(losses) == info["steps"] == 12
    assert losses[-1] < losses[0]  # distillation makes progress even in 12 steps
    assert {r["arch"] for r in run.metrics.read("supernet") if "arch" in r}.__len__() > 1  # one path per step


def test_search_respects_the_space_and_evaluated_uniquely(finished):
    run, _ = finished
    result = SearchResult.load(run.dir / "search" / "result.json")
    grown = elm_space.load(SearchSpace, run.dir / "supernet" / "final" / "space.json")
    hashes = [r.hash for r in result.records]
    assert len(hashes) == len(set(hashes)) == run.done_info("search")["evaluations"]
    for record in result.records:
        grown.check(record.architecture)
    best = min(result.records, key=lambda r: r.values["distill_loss"])
    assert run.done_info("search")["hash"] == best.hash
    assert (run.dir / "search" / "pareto.png").stat().st_size > 5000


def test_heads_divide_and_keep_parameters(finished):
    run, _ = finished
    before = Architecture.model_validate_json((run.dir / "search" / "architecture.json").read_text())
    after = Architecture.model_validate_json((run.dir / "heads" / "architecture.json").read_text())
    assert elm_space.count_params(before) == elm_space.count_params(after)
    for b, a in zip(before.layers, after.layers, strict=True):
        assert 1 <= a.heads <= b.heads
        assert a.attention_width(after.backbone.hidden_size) % a.heads == 0
    report = json.loads((run.dir / "heads" / "cka.json").read_text())
    assert [r["kept"] for r in report] == [c.heads for c in after.layers]
    # the tiny space offers 2 or 4 heads per candidate: the search chose them, CKA keeps them
    assert searched_heads(stages.supernet.grown_space(run), before) == [True] * len(before.layers)
    assert after == before and all(r["searched"] and r["removed"] == [] for r in report)


def test_head_choice_keeps_searched_counts_unless_told(finished):
    run, _ = finished
    arch = Architecture.model_validate_json((run.dir / "search" / "architecture.json").read_text())
    model = stages.supernet.trained_supernet(run).model
    val = eval_batches(run.blocks["validation"], run.config.deepspeed.micro_batch_size, 1)
    chosen, free = choose_heads(model, arch, val, 0.0)  # threshold 0: every later head is redundant
    assert [c.heads for c in chosen.layers] == [1] * len(arch.layers)
    assert elm_space.count_params(chosen) == elm_space.count_params(arch)
    kept, report = choose_heads(model, arch, val, 0.0, keep=[True, *[False] * (len(arch.layers) - 1)])
    assert kept.layers[0] == arch.layers[0] and [c.heads for c in kept.layers[1:]] == [1] * (
        len(arch.layers) - 1
    )
    assert report[0]["searched"] and report[0]["removed"] == [] and not report[1]["searched"]
    assert [r["mean_cka"] for r in report] == [r["mean_cka"] for r in free]  # measured either way


def test_retrained_students_load_with_transformers(finished):
    run, _ = finished
    info = run.done_info("retrain")
    assert set(info) == {"found", "baseline"}
    for name in ("found", "baseline"):
        model = AutoModelForMaskedLM.from_pretrained(run.dir / "retrain" / name / "model")
        arch = Architecture.from_string(info[name]["architecture"], run.initial_space.backbone)
        assert sum(p.numel() for p in model.parameters()) == elm_space.count_params(arch, head="masked_lm")
    baseline = Architecture.from_string(info["baseline"]["architecture"], run.initial_space.backbone)
    # independently: a uniform width w is possible when every layer has a BERT candidate at least
    # w wide (its leading rows); the baseline is the largest such path within the found size
    grown = elm_space.load(SearchSpace, run.dir / "supernet" / "final" / "space.json")
    bert = [[c for c in layer if c.kind.value == "bert"] for layer in grown.layers]
    widths = {c.ffn_width for layer in bert for c in layer}
    possible = [w for w in widths if all(any(c.ffn_width >= w for c in layer) for layer in bert)]

    def size(width: int) -> int:
        choice = elm_space.LayerChoice(candidate=0, kind="bert", ffn_width=width, heads=4)
        return elm_space.count_params(
            Architecture(backbone=grown.backbone, layers=(choice,) * grown.num_layers)
        )

    fitting = [w for w in possible if size(w) <= info["found"]["params"]]
    expected = max(fitting, key=size) if fitting else min(possible, key=size)
    assert {c.ffn_width for c in baseline.layers} == {expected}
    assert {(c.kind.value, c.heads) for c in baseline.layers} == {("bert", 4)}
    assert info["baseline"]["within_budget"] == bool(fitting)


def test_task_and_lm_results_are_consistent(finished):
    run, _ = finished
    results = [elm_eval.load_result(p) for p in (run.dir / "results").glob("*.json")]
    tasks = {r.model: r for r in results if r.kind == "task"}
    assert set(tasks) == {"teacher", "found", "baseline"}
    for r in tasks.values():
        assert 0.0 <= r.score <= 1.0 and r.num_validation_examples == 32
    lm = {r.model: r for r in results if r.kind == "lm"}
    onnx = {f"{n} (onnxruntime {p})" for n in ("found", "baseline") for p in ("fp32", "int8")}
    assert set(lm) == {"found", "baseline"} | (onnx if run.done_info("evaluate").get("deployment") else set())
    for r in lm.values():
        assert math.isclose(r.perplexity, math.exp(r.loss), rel_tol=1e-9)
    classifier = AutoModelForSequenceClassification.from_pretrained(
        run.dir / "tasks" / "tweet-sentiment" / "found"
    )
    assert classifier.config.num_labels == 3


def test_report_files(finished):
    run, _ = finished
    report = json.loads((run.dir / "report" / "report.json").read_text())
    for key in ("loss_curves", "width_growth", "search_progress", "score_vs_params", "score_vs_latency"):
        path = Path(report["files"][key])
        assert path.suffix == ".png" and path.stat().st_size > 5000, key
    assert "| found |" in Path(report["files"]["summary_markdown"]).read_text()
    text = (run.dir / "report" / "report.md").read_text()
    assert "## Comparison (elm-eval)" in text and "found" in text and "baseline" in text
    figures = run.done_info("data")["figures"]
    assert f"- data stage: {figures['documents']:,} documents" in text


def test_every_exported_student_has_a_model_card_with_its_scores(finished):
    from elm_train.models.model_card import read_metadata

    run, _ = finished
    info = run.done_info("retrain")
    for name in ("found", "baseline"):
        card = run.dir / "retrain" / name / "model" / "README.md"
        meta = read_metadata(card)
        text = card.read_text()
        assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "fill-mask"
        arch = Architecture.from_string(info[name]["architecture"], run.initial_space.backbone)
        with_head = elm_space.count_params(arch, head="masked_lm")  # what save_pretrained holds
        assert f"`{info[name]['architecture']}`" in text and f"**{with_head:,} parameters**" in text
        # the report completed it with what the run measured
        task = elm_eval.load_result(run.dir / "results" / f"task-tweet-sentiment-{name}.json")
        assert f"{task.score:.4f}"[:5] in text and "perplexity" in text


def test_deployment_files_and_figures(finished):
    """eval.onnx (on where onnxruntime is installed): each student's ONNX fp32 and int8 files, three
    runtimes timed at batch 1 and the micro-batch, and ONNX fp32 perplexity equal to PyTorch's."""
    pytest.importorskip("onnxruntime")
    run, _ = finished
    info = run.done_info("evaluate")
    for name in ("found", "baseline"):
        summary = info["deployment"][name]
        assert all(Path(p).is_file() for p in summary["files"].values())
        assert set(summary["files"]) == {"onnx-fp32", "onnx-int8"}
        assert summary["max_abs_diff"] <= 1e-4
        assert set(summary["latency"]) == set(elm_eval.onnx_export.RUNTIMES)
        assert all(set(by_batch) == {"1", "8"} for by_batch in summary["latency"].values())
        assert summary["perplexity"]["onnxruntime-fp32"] == pytest.approx(
            info[f"{name}.perplexity"], rel=1e-4
        )
        assert 1 < summary["perplexity"]["onnxruntime-int8"] < math.inf
        card = (run.dir / "retrain" / name / "model" / "README.md").read_text()
        assert "## Deployment (ONNX)" in card and "model.int8.onnx" in card
        # the fine-tuned classifier: its fp32 score by the deployment route is the tasks stage's score
        task = summary["tasks"]["tweet-sentiment"]
        scored = elm_eval.load_result(run.dir / "results" / f"task-tweet-sentiment-{name}.json")
        assert task["scores"]["pytorch-fp32"] == pytest.approx(scored.score, abs=1e-9)
        assert 0 <= task["scores"]["onnxruntime-int8"] <= 1 and task["examples"] == 32
        assert "ONNX Runtime int8" in card and "tweet-sentiment (32 examples)" in card
    report = (run.dir / "report" / "report.md").read_text()
    assert "## Deployment: found" in report and "ONNX Runtime int8" in report
