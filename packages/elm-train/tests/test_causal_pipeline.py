"""The causal family through the whole pipeline at tiny size (``tiny-clm``): a BPE trained on
PTB, a stand-in GPT-2 teacher trained first, logits distillation, and perplexities."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

import elm_eval
import elm_space
from elm_space import Architecture
from elm_train.data import load_corpus
from elm_train.models import ElmForCausalLM
from elm_train.pipeline import STAGE_NAMES, Run, run_all
from elm_train.presets import preset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = Run.open(preset("tiny-clm"), tmp_path_factory.mktemp("causal") / "run")
    messages: list[str] = []
    run_all(run, echo=messages.append)
    return run, messages


def _rows(run: Run, stage: str) -> list[dict]:
    return [r for r in run.metrics.read(stage) if "loss" in r and r.get("event") is None]


def test_every_stage_finished_and_tasks_are_skipped(finished):
    run, messages = finished
    assert all(run.is_done(stage) for stage in STAGE_NAMES)
    ran = [s for s in STAGE_NAMES if s not in ("tasks", "multitask")]
    assert [m for m in messages if m.endswith("running")] == [f"[elm-train] {s}: running" for s in ran]
    assert run.done_info("tasks") == {}
    assert not list((run.dir / "results").glob("*task*"))


def test_tokenizer_and_raw_blocks(finished):
    run, _ = finished
    tok = AutoTokenizer.from_pretrained(run.dir / "tokenizer")
    assert len(tok) == 400 == run.initial_space.backbone.vocab_size
    info = run.done_info("data")
    assert info["tokenizer"] == "bpe:400:2" and info["tokenizer_vocab"] == 400
    blocks = run.blocks["train"]["input_ids"]
    assert len(blocks) == 96 and {len(b) for b in blocks} == {32}
    # causal blocks are the packed stream itself: documents joined by EOS, no [CLS]/[SEP] wrapping
    docs = load_corpus(run.config.data)["train"][:40]
    stream = [i for doc in tok(docs, add_special_tokens=False)["input_ids"] for i in [*doc, tok.eos_token_id]]
    assert blocks[0] + blocks[1] == stream[:64]


def test_stand_in_teacher_is_trained_saved_and_reported(finished):
    run, _ = finished
    info = run.done_info("teacher")
    assert info["stand_in"] is True and "no pretrained GPT-2" in info["note"]
    teacher = AutoModelForCausalLM.from_pretrained(run.dir / "teacher" / "model")
    assert isinstance(teacher, GPT2LMHeadModel)
    assert (teacher.config.n_layer, teacher.config.n_embd, teacher.config.vocab_size) == (2, 32, 400)
    assert info["parameters"] == sum(p.numel() for p in teacher.parameters())
    losses = [r["loss"] for r in _rows(run, "teacher")]
    assert len(losses) == info["training"]["steps"] == 8
    assert losses[-1] < losses[0] < math.log(400) + 0.1  # starts near uniform, then learns
    assert (
        AutoTokenizer.from_pretrained(run.dir / "teacher" / "model").get_vocab() == run.tokenizer.get_vocab()
    )


def test_supernet_distils_logits_and_hidden_states_with_the_lm_loss(finished):
    run, _ = finished
    rows = _rows(run, "supernet")
    assert len(rows) == run.done_info("supernet")["steps"] == 12
    for r in rows:
        parts = r["embeddings.pearson"] + r["attention.pearson"] + r["layers.pearson"] + r["logits.soft_ce"]
        assert r["loss"] == pytest.approx(parts + 1.0 * r["lm"], rel=1e-5)  # lm_weight 1 by default
    assert rows[-1]["lm"] < rows[0]["lm"]


def test_retrained_students_are_causal_lms_with_logits_kd(finished):
    run, _ = finished
    info = run.done_info("retrain")
    assert set(info) == {"found", "baseline"}
    for name in ("found", "baseline"):
        model = AutoModelForCausalLM.from_pretrained(run.dir / "retrain" / name / "model")
        assert isinstance(model, ElmForCausalLM)
        arch = Architecture.from_string(info[name]["architecture"], run.initial_space.backbone)
        assert sum(p.numel() for p in model.parameters()) == elm_space.count_params(arch, head="causal_lm")
        rows = _rows(run, f"retrain.{name}")
        assert rows and all("logits.soft_ce" in r and "lm" in r for r in rows)
    baseline = Architecture.from_string(info["baseline"]["architecture"], run.initial_space.backbone)
    assert {c.kind.value for c in baseline.layers} == {"bert"} and len(
        {c.ffn_width for c in baseline.layers}
    ) == 1


def _sliding_window_nll(model: torch.nn.Module, ids: list[int], length: int, stride: int) -> float:
    """Mean NLL of every token after the first, each scored once with up to ``length - 1``
    tokens of context: an independent float64 implementation of the protocol."""
    total, count, scored_up_to = 0.0, 0, 1
    for begin in range(0, len(ids), stride):
        window = torch.tensor([ids[begin : begin + length]])
        with torch.no_grad():
            log_p = torch.log_softmax(model(input_ids=window).logits.double()[0], dim=-1).numpy()
        for position in range(max(scored_up_to, begin + 1), begin + window.shape[1]):
            total -= log_p[position - begin - 1, ids[position]]
            count += 1
        scored_up_to = begin + window.shape[1]
        if scored_up_to == len(ids):
            break
    return total / count


def test_perplexities_of_teacher_and_students(finished):
    run, _ = finished
    results = {
        r.model: r
        for r in (elm_eval.load_result(p) for p in (run.dir / "results").glob("*.json"))
        if r.kind == "lm"
    }
    onnx = {m: results.pop(m) for m in list(results) if "(onnxruntime" in m}  # eval.onnx, when installed
    assert set(results) == {"teacher", "found", "baseline"}
    for name in ("found", "baseline") if onnx else ():
        assert onnx[f"{name} (onnxruntime fp32)"].perplexity == pytest.approx(
            results[name].perplexity, rel=1e-4
        )
        assert onnx[f"{name} (onnxruntime int8)"].perplexity < 400
    for r in results.values():
        assert math.isfinite(r.loss) and r.perplexity == pytest.approx(math.exp(r.loss), rel=1e-12)
        assert r.perplexity < 400  # every model beats a uniform guess over the vocabulary
    # the teacher's number, recomputed here on the PTB test split the pipeline says it scored
    texts = load_corpus(run.config.data)["test"][: run.config.eval.lm_documents]
    ids = run.tokenizer(run.tokenizer.eos_token.join(texts), add_special_tokens=False)["input_ids"]
    teacher = AutoModelForCausalLM.from_pretrained(run.dir / "teacher" / "model").eval()
    nll = _sliding_window_nll(teacher, ids, 32, 16)
    assert results["teacher"].loss == pytest.approx(nll, rel=1e-5)
    assert results["teacher"].num_scored_tokens == len(ids) - 1
    evaluate = run.done_info("evaluate")
    assert {k: v for k, v in evaluate.items() if k.endswith(".perplexity")} == {
        f"{m}.perplexity": r.perplexity for m, r in results.items()
    }


def test_report_names_the_stand_in_and_lists_perplexities(finished):
    run, _ = finished
    text = (run.dir / "report" / "report.md").read_text()
    assert "**Stand-in teacher:**" in text and "teacher.name_or_path: gpt2" in text
    evaluate = run.done_info("evaluate")
    for label, name in (("teacher (stand-in)", "teacher"), ("found", "found"), ("baseline", "baseline")):
        assert f"| {label} |" in text
        assert f"{evaluate[f'{name}.perplexity']:.2f} |" in text
    report = json.loads((run.dir / "report" / "report.json").read_text())
    assert report["stages"]["teacher"]["stand_in"] is True
    assert Path(report["files"]["loss_curves"]).stat().st_size > 5000
    assert np.isfinite(report["stages"]["supernet"]["final_loss"])
