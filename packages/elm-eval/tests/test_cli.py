"""One evaluation, three routes: an in-memory model through the API, its save_pretrained directory
through the API, and the directory through the ``elm-eval`` command. All must give the same numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertForMaskedLM, BertModel, GPT2LMHeadModel

from elm_eval import (
    CausalLMConfig,
    FinetuneConfig,
    LatencyConfig,
    MaskedLMConfig,
    causal_lm_perplexity,
    evaluate_task,
    finetune,
    load_task_spec,
    masked_lm_perplexity,
    measure_latency,
)
from elm_eval.cli import main


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer, bert_config, gpt2_config) -> dict[str, tuple[torch.nn.Module, Path]]:
    """Each tiny model in memory and saved (with the tokenizer) to a directory."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    built = {
        "bert": BertModel(bert_config(len(tokenizer))),
        "mlm": BertForMaskedLM(bert_config(len(tokenizer))),
        "clm": GPT2LMHeadModel(gpt2_config(len(tokenizer))),
    }
    out = {}
    for name, model in built.items():
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        out[name] = (model, root / name)
    return out


@pytest.fixture(scope="module")
def text_file(tmp_path_factory, sentences) -> Path:
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text("\n".join(sentences(40, seed=9)) + "\n", encoding="utf-8")
    return path


def _cli_result(out: Path, argv: list[str], name: str) -> dict:
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    return json.loads((out / name).read_text())


def test_task_same_numbers_in_memory_directory_and_cli(
    models, tokenizer, toy_task_dir: Path, tmp_path: Path
) -> None:
    model, folder = models["bert"]
    spec = load_task_spec(toy_task_dir / "task.yaml").capped(train=96, validation=40, test=40)
    config = FinetuneConfig(
        learning_rate=3e-3, epochs=2, batch_size=16, max_length=16, seed=3, progress=False
    )
    in_memory, _ = finetune(model, tokenizer, spec, config)
    from_dir = evaluate_task(folder, folder, spec, config)
    argv = ["task", "--model", str(folder), "--task-spec", str(toy_task_dir / "task.yaml"), "--name", "bert"]
    argv += [
        "--max-train",
        "96",
        "--max-validation",
        "40",
        "--max-test",
        "40",
        "--lr",
        "3e-3",
        "--epochs",
        "2",
    ]
    argv += ["--batch-size", "16", "--max-length", "16", "--seed", "3"]
    cli = _cli_result(tmp_path, argv, "task-toy-bert.json")
    assert in_memory.train_loss_curve == from_dir.train_loss_curve == cli["train_loss_curve"]
    assert in_memory.validation_metrics == from_dir.validation_metrics == cli["validation_metrics"]
    assert in_memory.test_metrics == from_dir.test_metrics == cli["test_metrics"]
    assert in_memory.num_parameters == from_dir.num_parameters == cli["num_parameters"]
    assert (
        len(in_memory.train_loss_curve) == 2 * 6
        and in_memory.train_loss_curve[0] != in_memory.train_loss_curve[-1]
    )


def test_masked_lm_same_numbers_in_memory_directory_and_cli(
    models, tokenizer, text_file: Path, tmp_path: Path
) -> None:
    model, folder = models["mlm"]
    texts = text_file.read_text().splitlines()
    config = MaskedLMConfig(
        max_length=12, batch_size=5, progress=False, masking={"seed": 4, "mask_prob": 0.3}
    )
    in_memory = masked_lm_perplexity(model, tokenizer, texts, config)
    from_dir = masked_lm_perplexity(folder, folder, texts, config)
    argv = ["lm", "--objective", "masked-lm", "--model", str(folder), "--text", str(text_file)]
    argv += ["--max-length", "12", "--batch-size", "5", "--seed", "4", "--mask-prob", "0.3"]
    cli = _cli_result(tmp_path, argv, "lm-masked-lm-mlm.json")
    assert in_memory.loss == pytest.approx(from_dir.loss, rel=1e-6) and from_dir.loss == pytest.approx(
        cli["loss"], rel=1e-6
    )
    assert in_memory.num_scored_tokens == from_dir.num_scored_tokens == cli["num_scored_tokens"] > 50


def test_causal_lm_same_numbers_in_memory_directory_and_cli(
    models, tokenizer, text_file: Path, tmp_path: Path
) -> None:
    model, folder = models["clm"]
    config = CausalLMConfig(max_length=24, stride=8, progress=False)
    in_memory = causal_lm_perplexity(model, tokenizer, [text_file.read_text()], config)
    from_dir = causal_lm_perplexity(folder, folder, [text_file.read_text()], config)
    argv = ["lm", "--objective", "causal-lm", "--model", str(folder), "--text", str(text_file)]
    cli = _cli_result(tmp_path, [*argv, "--max-length", "24", "--stride", "8"], "lm-causal-lm-clm.json")
    assert in_memory.loss == pytest.approx(from_dir.loss, rel=1e-6) and from_dir.loss == pytest.approx(
        cli["loss"], rel=1e-6
    )
    assert (
        in_memory.num_scored_tokens
        == cli["num_scored_tokens"]
        == len(tokenizer(text_file.read_text(), add_special_tokens=False)["input_ids"]) - 1
    )


def test_latency_and_report_through_the_command(models, tmp_path: Path, capsys) -> None:
    model, folder = models["mlm"]
    argv = [
        "latency",
        "--model",
        str(folder),
        "--batch-sizes",
        "1",
        "2",
        "--seq-lengths",
        "8",
        "--warmup",
        "0",
    ]
    cli = _cli_result(tmp_path, [*argv, "--repeats", "2", "--threads", "1"], "latency-mlm.json")
    api = measure_latency(model, LatencyConfig(batch_sizes=[1], seq_lengths=[8], repeats=1, progress=False))
    assert cli["num_parameters"] == api.num_parameters and cli["num_threads"] == 1
    assert [(e["batch_size"], e["seq_length"]) for e in cli["entries"]] == [(1, 8), (2, 8)]
    task = {
        "model": "mlm",
        "task": "toy",
        "metric": "accuracy",
        "score": 0.5,
        "validation_metrics": {"accuracy": 0.5},
    }
    task |= {"kind": "task", "num_parameters": 1, "num_train_examples": 1, "num_validation_examples": 1}
    (tmp_path / "task.json").write_text(json.dumps(task))
    capsys.readouterr()
    report_dir = tmp_path / "report"
    assert (
        main(
            [
                "report",
                str(tmp_path / "latency-mlm.json"),
                str(tmp_path / "task.json"),
                "--out",
                str(report_dir),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"| mlm | {api.num_parameters:,} |" in printed
    assert (report_dir / "score_vs_latency.png").is_file() and (report_dir / "score_vs_params.png").is_file()


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"elm-eval {argv[0]}: error: " in err and "Traceback" not in err  # transformers may log before it
    return err


def test_bad_input_gives_a_clear_error_and_status_2(
    models, toy_task_dir: Path, tmp_path: Path, capsys
) -> None:
    folder = str(models["bert"][1])
    assert "model directory './no/such/model' not found" in _error(
        ["latency", "--model", "./no/such/model"], capsys
    )
    assert "text file" in _error(
        ["lm", "--objective", "masked-lm", "--model", folder, "--text", "nope.txt"], capsys
    )
    assert "unknown task 'glue-x'" in _error(["task", "--model", folder, "--task", "glue-x"], capsys)
    assert "exactly one of --task" in _error(["task", "--model", folder], capsys)
    spec = (toy_task_dir / "task.yaml").read_text().replace("[sentence]", "[text]")
    (tmp_path / "train.tsv").write_text((toy_task_dir / "train.tsv").read_text())
    (tmp_path / "dev.tsv").write_text((toy_task_dir / "dev.tsv").read_text().replace("\t1\n", "\tyes\n", 1))
    (tmp_path / "test.tsv").write_text((toy_task_dir / "test.tsv").read_text())
    (tmp_path / "bad.yaml").write_text(spec)
    assert "unknown column 'text'" in _error(
        ["task", "--model", folder, "--task-spec", str(tmp_path / "bad.yaml")], capsys
    )
    (tmp_path / "labels.yaml").write_text(spec.replace("[text]", "[sentence]"))
    err = _error(["task", "--model", folder, "--task-spec", str(tmp_path / "labels.yaml")], capsys)
    assert "label mismatch" in err and "'yes'" in err
    (tmp_path / "dev.tsv").write_text((toy_task_dir / "dev.tsv").read_text())
    (tmp_path / "test.tsv").write_text("sentence\tlabel\n")
    assert "test split of task 'toy'" in _error(
        ["task", "--model", folder, "--task-spec", str(tmp_path / "labels.yaml")], capsys
    )
    assert "no trained masked-lm head" in _error(
        ["lm", "--objective", "masked-lm", "--model", folder, "--text", str(tmp_path / "train.tsv")], capsys
    )
    assert "stride (9) must not exceed max_length (8)" in _error(
        [
            "lm",
            "--objective",
            "causal-lm",
            "--model",
            folder,
            "--text",
            str(tmp_path / "train.tsv"),
            "--max-length",
            "8",
            "--stride",
            "9",
        ],
        capsys,
    )


@pytest.mark.slow
def test_installed_console_script_runs(models) -> None:
    script = Path(sys.executable).parent / "elm-eval"
    folder = str(models["bert"][1])
    argv = [
        str(script),
        "latency",
        "--model",
        folder,
        "--batch-sizes",
        "1",
        "--seq-lengths",
        "8",
        "--repeats",
        "2",
    ]
    done = subprocess.run(
        [*argv, "--no-progress", "--no-memory"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "## latency: bert" in done.stdout and "| 1 | 8 |" in done.stdout
