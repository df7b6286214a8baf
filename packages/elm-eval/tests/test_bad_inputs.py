"""Issue 16: each bad input a new user tried, through ``elm-eval``'s main() in-process.

Every example once ended in a raw traceback, was silently accepted, lost data, or could not be
used as documented. Now each either works or exits 2 with one line, ``elm-eval <command>: error:
<file or option>: <what is wrong>``, and errors that can be known before the work starts come
before it (a fixture makes fine-tuning and evaluation loops fail the test if they start).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from elm_eval.cli import main

ROWS = [("good movie", 1), ("bad film", 0), ("great fun", 1), ("awful and dull", 0)] * 2
SPEC = (
    "name: toy\nsource: {{kind: files, train: {train}, validation: {dev}{extra}}}\ntext_columns: [sentence]\n"
)
SPEC += "label_column: label\n{fields}"


def write_task(
    folder: Path,
    train: bytes | None = None,
    fmt: str = "tsv",
    source_extra: str = "",
    fields: str = "",
) -> Path:
    """A task folder: train/dev files (``train`` replaces the train file's bytes) and task.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        good = "".join(json.dumps({"sentence": s, "label": y}) + "\n" for s, y in ROWS).encode()
    else:
        good = ("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in ROWS)).encode()
    (folder / f"train.{fmt}").write_bytes(good if train is None else train)
    (folder / f"dev.{fmt}").write_bytes(good)
    spec = SPEC.format(train=f"train.{fmt}", dev=f"dev.{fmt}", extra=source_extra, fields=fields)
    (folder / "task.yaml").write_text(spec, encoding="utf-8")
    return folder / "task.yaml"


def task_argv(model: Path, spec: Path, *extra: str) -> list[str]:
    fast = ["--epochs", "1", "--batch-size", "4", "--max-length", "16", "--no-progress"]
    return ["task", "--model", str(model), "--task-spec", str(spec), *fast, *extra]


def lm_argv(model: Path, text: Path, objective: str = "masked-lm", *extra: str) -> list[str]:
    base = ["lm", "--objective", objective, "--model", str(model), "--text", str(text), "--no-progress"]
    return [*base, "--max-length", "16", *extra]


def corpus(folder: Path, data: bytes | None = None) -> Path:
    path = folder / "corpus.txt"
    path.write_bytes(data if data is not None else b"the good movie\na bad film\nit was great fun\n")
    return path


def latin1_tsv() -> bytes:
    return "sentence\tlabel\ngood movie\t1\ncaf\xe9 film\t0\n".encode("latin-1")


def regression_spec(folder: Path, labels: list[str]) -> Path:
    train = "sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for (s, _), y in zip(ROWS, labels, strict=False))
    return write_task(
        folder, train.encode(), fields="task_type: regression\nnum_labels: 1\nmetric: pearson_spearman\n"
    )


# name -> (argv builder, expected error regex or None for success); the builder gets (tmp, models)
Case = Callable[[Path, dict[str, Path]], list[str]]
CASES: dict[str, tuple[Case, str | None]] = {
    # raw tracebacks before
    "tsv field over 131,072 characters": (
        lambda t, m: task_argv(
            m["mlm"], write_task(t, ("sentence\tlabel\n" + "good " * 30_000 + "\t1\nbad film\t0\n").encode())
        ),
        None,
    ),
    "latin-1 data file": (
        lambda t, m: task_argv(m["mlm"], write_task(t, latin1_tsv())),
        r"train\.tsv, line 3: not utf-8 text \(byte 0xe9 at offset \d+\); set source\.encoding",
    ),
    "latin-1 data file with its encoding declared": (
        lambda t, m: task_argv(m["mlm"], write_task(t, latin1_tsv(), source_extra=", encoding: latin-1")),
        None,
    ),
    "JSON-lines row without the label key": (
        lambda t, m: task_argv(
            m["mlm"],
            write_task(
                t,
                b'{"sentence": "good", "label": 1}\n{"sentence": "bad", "label": 0}\n{"sentence": "fun"}\n',
                "jsonl",
            ),
        ),
        r"train\.jsonl, line 3: no 'label' field \(the row has \['sentence'\]\)",
    ),
    "binary task spec": (
        lambda t, m: task_argv(m["mlm"], _binary(t / "task.yaml")),
        r"task\.yaml, line 1: not utf-8 text \(byte 0x89 at offset 0\)",
    ),
    "--max-length above the model's positions (task)": (
        lambda t, m: [*task_argv(m["mlm"], write_task(t)), "--max-length", "100"],
        r"max_length: 100 exceeds the model's 64 position embeddings",
    ),
    "--max-length above the model's positions (masked lm)": (
        lambda t, m: lm_argv(m["mlm"], corpus(t), "masked-lm", "--max-length", "65"),
        r"max_length: 65 exceeds the model's 64 position embeddings",
    ),
    "--max-length above the model's positions (causal lm)": (
        lambda t, m: lm_argv(m["clm"], corpus(t), "causal-lm", "--max-length", "65"),
        r"max_length: 65 exceeds the model's 64 position embeddings",
    ),
    "tokenizer larger than the model's vocabulary (task)": (
        lambda t, m: task_argv(m["small-vocab"], write_task(t)),
        r"tokenizer: it has \d+ tokens but the model's vocabulary has 40",
    ),
    "tokenizer larger than the model's vocabulary (lm)": (
        lambda t, m: lm_argv(m["small-vocab"], corpus(t)),
        r"tokenizer: it has \d+ tokens but the model's vocabulary has 40",
    ),
    "tokenizer larger than the model's vocabulary (causal lm)": (
        lambda t, m: lm_argv(m["small-vocab"], corpus(t, b"the good movie w1 w2 w3\n"), "causal-lm"),
        r"token ids: \d+ is outside the model's vocabulary of 40 tokens",
    ),
    "--seq-lengths 0": (
        lambda t, m: ["latency", "--model", str(m["mlm"]), "--seq-lengths", "0", "--no-progress"],
        r"--seq-lengths\[0\]: Input should be greater than 0 \(got 0\)",
    ),
    "--out naming an existing file": (
        lambda t, m: [*task_argv(m["mlm"], write_task(t)), "--out", str(_file(t / "results.txt"))],
        r"--out .*results\.txt: exists and is not a folder",
    ),
    "--out below an existing file": (
        lambda t, m: [*lm_argv(m["mlm"], corpus(t)), "--out", str(_file(t / "results.txt") / "sub")],
        r"--out .*sub: .*results\.txt is a file, so the folder cannot be made",
    ),
    "latin-1 text for elm-eval lm": (
        lambda t, m: lm_argv(m["mlm"], corpus(t, "a good film\ncaf\xe9 film\n".encode("latin-1"))),
        r"corpus\.txt, line 2: not utf-8 text \(byte 0xe9 at offset 15\); pass --encoding",
    ),
    "latin-1 text for elm-eval lm with --encoding latin-1": (
        lambda t, m: [
            *lm_argv(m["mlm"], corpus(t, "a good film\ncaf\xe9 film\n".encode("latin-1"))),
            "--encoding",
            "latin-1",
        ],
        None,
    ),
    "unknown --encoding": (
        lambda t, m: [*lm_argv(m["mlm"], corpus(t)), "--encoding", "klingon"],
        r"corpus\.txt: unknown text encoding 'klingon'",
    ),
    # silently accepted before
    "NaN regression labels": (
        lambda t, m: task_argv(m["mlm"], regression_spec(t, ["0.5", "1.5", "nan", "2.0"])),
        r"train\.tsv, line 4: regression label 'nan' is not a finite number",
    ),
    "infinite regression labels": (
        lambda t, m: task_argv(m["mlm"], regression_spec(t, ["0.5", "inf", "1.0", "2.0"])),
        r"train\.tsv, line 3: regression label 'inf' is not a finite number",
    ),
    "--max-train -5": (
        lambda t, m: [*task_argv(m["mlm"], write_task(t)), "--max-train", "-5"],
        r"--max-train: must be at least 1 \(got -5\)",
    ),
    "--max-texts 0": (
        lambda t, m: [*lm_argv(m["mlm"], corpus(t)), "--max-texts", "0"],
        r"--max-texts: must be at least 1 \(got 0\)",
    ),
    "--threads 0": (
        lambda t, m: ["latency", "--model", str(m["mlm"]), "--threads", "0"],
        r"--threads: Input should be greater than or equal to 1 \(got 0\)",
    ),
    "unknown --device": (
        lambda t, m: ["latency", "--model", str(m["mlm"]), "--device", "tpu9"],
        r"--device: Value error, 'tpu9' is not a device|--device: 'tpu9' is not a device",
    ),
    "empty --model": (
        lambda t, m: ["latency", "--model", ""],
        r"model: an empty path or hub id",
    ),
    "--latency-at a point that was not measured": (
        lambda t, m: ["report", str(_latency_result(t)), "--out", str(t / "r"), "--latency-at", "4", "8"],
        r"latency_at \(4, 8\): 'm' was measured at \(batch, seq\) \[\(1, 8\)\], not there",
    ),
    "a result file that is not one": (
        lambda t, m: ["report", str(_file(t / "x.json")), "--out", str(t / "r")],
        r"x\.json: not an elm-eval result file: ",
    ),
    "a usage error names the option": (
        lambda t, m: ["task", "--model", str(m["mlm"]), "--epochs", "two"],
        r"argument --epochs: invalid int value: 'two'",
    ),
    # data loss before
    "--save-model naming the input model": (
        lambda t, m: [*task_argv(m["mlm"], write_task(t)), "--save-model", str(m["mlm"])],
        r"--save-model .*mlm: this is the input model folder; saving the fine-tuned classifier there",
    ),
    "--save-model naming the input model, with --overwrite": (
        lambda t, m: [
            *task_argv(m["mlm"], write_task(t)),
            "--save-model",
            str(m["mlm"]) + "/",
            "--overwrite",
        ],
        r"--save-model .*mlm/?: this is the input model folder",
    ),
    "--save-model onto an earlier saved model": (
        lambda t, m: [*task_argv(m["mlm"], write_task(t)), "--save-model", str(_saved(t / "earlier"))],
        r"--save-model .*earlier: already holds a saved model \(config\.json\); pass --overwrite",
    ),
    "--save-model onto an earlier saved model, with --overwrite": (
        lambda t, m: [
            *task_argv(m["mlm"], write_task(t)),
            "--save-model",
            str(_saved(t / "earlier")),
            "--overwrite",
        ],
        None,
    ),
}


def _binary(path: Path) -> Path:
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
    return path


def _file(path: Path) -> Path:
    path.write_text("not a folder\n", encoding="utf-8")
    return path


def _saved(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    return folder


def _latency_result(folder: Path) -> Path:
    stats = {"median_ms": 1, "mean_ms": 1, "std_ms": 0, "min_ms": 1, "max_ms": 1, "repeats": 1}
    stats |= {"warmup": 0, "device": "cpu", "num_threads": 1}
    result = {"kind": "latency", "model": "m", "device": "cpu", "num_threads": 1, "num_parameters": 1}
    result |= {"parameter_bytes": 4, "peak_memory_method": "x"}
    result["entries"] = [{"batch_size": 1, "seq_length": 8, "stats": stats}]
    path = folder / "latency.json"
    path.write_text(json.dumps(result), encoding="utf-8")
    return path


@pytest.fixture
def no_work(monkeypatch):
    """Make the start of fine-tuning or of an evaluation loop fail the test (errors must come first)."""

    def started(*args, **kwargs):
        pytest.fail("the work started before the bad input was reported")

    # by module name: the package re-exports functions called finetune and lm-like names
    monkeypatch.setattr(importlib.import_module("elm_eval.finetune"), "_optimizer_and_schedule", started)
    monkeypatch.setattr(importlib.import_module("elm_eval.lm"), "_masked_nll", started)
    monkeypatch.setattr(importlib.import_module("elm_eval.lm"), "_windows_nll", started)
    monkeypatch.setattr(importlib.import_module("elm_eval.latency"), "time_calls", started)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def assert_one_error_line(err: str, command: str, pattern: str) -> str:
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"elm-eval {command}: error: "), lines[0]
    message = lines[0].split(": error: ", 1)[1]
    assert re.search(pattern, message), (pattern, message)
    return message


def _weights_digest(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.parametrize("name", [name for name, (_, error) in CASES.items() if error is not None])
def test_bad_input_exits_2_with_one_line_before_any_work(name, tmp_path, model_dirs, capsys, no_work):
    build, pattern = CASES[name]
    argv = build(tmp_path, model_dirs)
    digest = _weights_digest(model_dirs["mlm"])
    status, err = run_cli(argv, capsys)
    assert status == 2, err
    assert_one_error_line(err, argv[0], pattern)
    assert _weights_digest(model_dirs["mlm"]) == digest  # the input model is never touched


@pytest.mark.parametrize("name", [name for name, (_, error) in CASES.items() if error is None])
def test_formerly_failing_input_now_works(name, tmp_path, model_dirs, capsys):
    build, _ = CASES[name]
    argv = [*build(tmp_path, model_dirs), "--out", str(tmp_path / "out")]
    status, err = run_cli(argv, capsys)
    assert status == 0, err
    assert len(list((tmp_path / "out").glob("*.json"))) == 1


def test_label_column_among_text_columns_is_refused(tmp_path, model_dirs, capsys, no_work):
    spec = write_task(tmp_path)
    spec.write_text(spec.read_text().replace("[sentence]", "[sentence, label]"), encoding="utf-8")
    status, err = run_cli(task_argv(model_dirs["mlm"], spec), capsys)
    assert status == 2
    assert_one_error_line(err, "task", r"task\.yaml: invalid task spec: label_column 'label' is also one of")


# ---------- ELM exports: loadable through the entry point, or with --trust-remote-code ----------


def _need_elm(model_dirs) -> None:
    if "elm-mlm" not in model_dirs:
        pytest.skip("no installed package registers model_type 'elm' (elm-train is not installed)")


@pytest.mark.parametrize("command", ["task", "masked-lm", "causal-lm", "latency"])
def test_elm_exports_load_where_elm_train_is_installed(command, tmp_path, model_dirs, capsys):
    _need_elm(model_dirs)
    if command == "task":
        argv = task_argv(model_dirs["elm-mlm"], write_task(tmp_path), "--save-model", str(tmp_path / "ft"))
    elif command == "latency":
        argv = ["latency", "--model", str(model_dirs["elm-mlm"]), "--batch-sizes", "1", "--seq-lengths", "8"]
        argv += ["--repeats", "1", "--warmup", "0", "--no-memory", "--no-progress"]
    else:
        argv = lm_argv(model_dirs["elm-" + command[0] + "lm"], corpus(tmp_path), command)
    status, err = run_cli([*argv, "--out", str(tmp_path / "out")], capsys)
    assert status == 0, err
    if command == "task":
        assert json.loads((tmp_path / "ft" / "config.json").read_text())["model_type"] == "elm"


@pytest.fixture
def without_elm_registration(monkeypatch):
    """This process as it is where elm-train is not installed: no entry point, and transformers'
    Auto classes without model_type "elm" (its registration removed for the test, then restored)."""
    from transformers.models.auto import configuration_auto, modeling_auto

    loading = importlib.import_module("elm_eval.loading")
    monkeypatch.setattr(loading, "_registered", {})  # as if the entry-point group were empty
    config_map = configuration_auto.CONFIG_MAPPING
    if not hasattr(config_map, "_extra_content"):
        pytest.skip("this transformers keeps its registrations elsewhere")
    elm_config = config_map._extra_content.get("elm")
    monkeypatch.setattr(
        config_map, "_extra_content", {k: v for k, v in config_map._extra_content.items() if k != "elm"}
    )
    for name in (
        "MODEL_MAPPING",
        "MODEL_FOR_MASKED_LM_MAPPING",
        "MODEL_FOR_CAUSAL_LM_MAPPING",
        "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING",
    ):
        mapping = getattr(modeling_auto, name)
        kept = {k: v for k, v in mapping._extra_content.items() if k is not elm_config}
        monkeypatch.setattr(mapping, "_extra_content", kept)
    monkeypatch.setattr(sys, "path", list(sys.path))  # remote code adds the modules cache to it


def test_elm_exports_without_elm_train_need_trust_remote_code(
    tmp_path, model_dirs, capsys, without_elm_registration
):
    _need_elm(model_dirs)
    argv = lm_argv(model_dirs["elm-mlm"], corpus(tmp_path))
    status, err = run_cli(argv, capsys)
    assert status == 2
    message = assert_one_error_line(
        err, "lm", r"config\.json names model_type 'elm', which no installed package registers"
    )
    assert "--trust-remote-code" in message and "elm-train" in message
    status, err = run_cli([*argv, "--trust-remote-code"], capsys)
    assert status == 0, err


def test_registration_comes_from_the_entry_point_only():
    """elm-eval never imports elm-train by name (the dependency arrows point one way)."""
    source = Path(__file__).resolve().parents[1] / "src" / "elm_eval"
    for path in source.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import elm_train" not in text and "from elm_train" not in text, path
