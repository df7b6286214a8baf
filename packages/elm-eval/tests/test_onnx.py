"""ONNX export: the fp32 graph reproduces PyTorch (masked and causal, padded batches of a shape it
was not traced on), the int8 graph loads and runs, and the evaluators score an ONNX file by the
same code as the PyTorch model."""

from __future__ import annotations

import json

import pytest
import torch

import elm_eval as ee
from elm_eval.cli import main

pytest.importorskip("onnxruntime")

HEADS = {"elm-mlm": "masked-lm", "elm-clm": "causal-lm", "clm": "causal-lm"}


@pytest.fixture(scope="module")
def exports(model_dirs, tmp_path_factory):
    names = [name for name in HEADS if name in model_dirs]
    root = tmp_path_factory.mktemp("onnx")
    return {name: ee.export_onnx(model_dirs[name], root / name, HEADS[name]) for name in names}


@pytest.mark.parametrize("name", list(HEADS))
def test_fp32_graph_equals_pytorch_and_int8_runs(name, exports, model_dirs):
    if name not in exports:
        pytest.skip("no package registers model_type elm")
    export = exports[name]
    model = ee.loading.load_model(model_dirs[name], export.head).eval()
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(5, model.config.vocab_size, (4, 13), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # padding: the graph must apply the mask (ELM skips an all-ones one)
    mask[3, 4:] = 0
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits
    fp32 = ee.OrtModel(export, "fp32")(input_ids=ids, attention_mask=mask).logits
    assert fp32.shape == expected.shape
    assert float((fp32 - expected).abs().max()) <= 1e-4
    # the mask is in the graph: with padding unmasked, row 1's outputs move (PyTorch and ONNX alike)
    # by more than the tolerance the masked outputs were compared with
    ones = torch.ones_like(ids)
    unmasked = ee.OrtModel(export, "fp32")(input_ids=ids, attention_mask=ones).logits
    with torch.inference_mode():
        assert float((unmasked - model(input_ids=ids, attention_mask=ones).logits).abs().max()) <= 1e-4
    if export.head == "masked-lm":
        assert float((unmasked[1, :9] - fp32[1, :9]).abs().max()) > 2e-4
    int8 = ee.OrtModel(export, "int8")(input_ids=ids, attention_mask=mask).logits
    assert int8.shape == expected.shape and bool(torch.isfinite(int8).all())
    assert export.int8 is not None and export.int8.stat().st_size < export.fp32.stat().st_size
    assert float((int8 - expected).abs().max()) > 0  # it is quantised, not a copy


def test_evaluators_score_onnx_like_pytorch(exports, model_dirs, tokenizer, sentences):
    texts = sentences(30, seed=3)
    if "elm-mlm" in exports:
        config = ee.MaskedLMConfig(max_length=32, progress=False)
        torch_ppl = ee.masked_lm_perplexity(model_dirs["elm-mlm"], tokenizer, texts, config).perplexity
        onnx_ppl = ee.masked_lm_perplexity(ee.OrtModel(exports["elm-mlm"]), tokenizer, texts, config)
        assert onnx_ppl.perplexity == pytest.approx(torch_ppl, rel=1e-5)
    config = ee.CausalLMConfig(max_length=16, stride=8, progress=False)
    torch_ppl = ee.causal_lm_perplexity(model_dirs["clm"], tokenizer, texts, config).perplexity
    assert ee.causal_lm_perplexity(
        ee.OrtModel(exports["clm"]), tokenizer, texts, config
    ).perplexity == pytest.approx(torch_ppl, rel=1e-5)
    int8 = ee.causal_lm_perplexity(ee.OrtModel(exports["clm"], "int8"), tokenizer, texts, config)
    assert 1 < int8.perplexity < float("inf")


def test_latency_cli_times_three_runtimes(model_dirs, tmp_path, capsys):
    argv = ["latency", "--model", str(model_dirs["mlm"]), "--head", "masked-lm", "--onnx"]
    argv += ["--onnx-dir", str(tmp_path / "onnx"), "--batch-sizes", "1", "2", "--seq-lengths", "8"]
    argv += ["--repeats", "2", "--warmup", "1", "--threads", "1", "--no-memory", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    results = [ee.load_result(p) for p in sorted((tmp_path / "out").glob("*.json"))]
    assert sorted(r.runtime for r in results) == sorted(ee.onnx_export.RUNTIMES)
    for result in results:
        assert [(e.batch_size, e.seq_length) for e in result.entries] == [(1, 8), (2, 8)]
        assert result.num_threads == 1
    record = json.loads((tmp_path / "onnx" / "onnx_export.json").read_text())
    assert record["head"] == "masked-lm" and record["max_abs_diff"] <= 1e-4


def test_onnx_command_writes_the_files_and_refuses_a_file_as_out(model_dirs, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["onnx", "--model", str(model_dirs["clm"]), "--head", "causal-lm", "--out", str(out)]) == 0
    record = ee.read_export(out)
    assert record.head == "causal-lm" and record.fp32.is_file() and record.int8 is not None
    assert record.int8.is_file() and record.max_abs_diff <= 1e-4
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["onnx", "--model", str(model_dirs["clm"]), "--out", str(blocker)]) == 2
    assert "--out" in capsys.readouterr().err
