"""The whole pipeline under fault injection: every row either resumes to outputs bit-identical to an
uninterrupted run, or stops with a one-line error naming the file; no run exits 0 with non-finite
results.

One uninterrupted reference run (in-process). Kill rows: ``elm-train run`` in a subprocess that
SIGKILLs itself at a named point (:mod:`elm_train.runtime.faults`, ``ELM_TRAIN_CRASH_AFTER_STEP``), then
``--resume`` in-process, then the outputs are compared with the reference: the supernet's weights,
the search result, the retrained students' weights and tokenizer files, the task models' weights
and every number of the report. Damage rows start from a run killed mid-supernet and damage its
newest checkpoint before resuming. Checkpoint-level faults on a toy engine are in
test_checkpoint_faults.py; this file is about the pipeline around them.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from elm_train.cli import main
from elm_train.runtime import checkpoint, fsio
from elm_train.runtime.checkpoint import CheckpointWarning
from elm_train.runtime.lock import RunLock

pytestmark = pytest.mark.slow

PLUGINS = Path(__file__).parent / "plugins"
STUDENTS = ("found", "baseline")
TASK = "tweet-sentiment"
CRASH_VARS = ("ELM_TRAIN_CRASH_AT", "ELM_TRAIN_CRASH_AFTER_STEP", "ELM_TEST_NAN_FROM")
SUPERNET_CKPTS = Path("supernet") / "checkpoints"


def write_config(path: Path, teacher: Path, **extra: Any) -> Path:
    """``tiny`` with the baseline, one small task, LM perplexity and no latency measurement."""
    fields = {
        "preset": "tiny",
        "teacher": {"name_or_path": str(teacher)},
        "baseline": {"enabled": True},
        "tasks": {"tasks": [TASK]},
        "eval": {"lm": True, "latency": False},
        **extra,
    }
    path.write_text(yaml.safe_dump(fields))
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """In-process parts run on one thread like the killed subprocesses (OMP_NUM_THREADS=1), so
    that a run resumed across the two computes exactly what one process would."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_teacher_dir) -> Path:
    return write_config(tmp_path_factory.mktemp("config") / "run.yaml", tiny_teacher_dir)


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory) -> Path:
    """The uninterrupted run every resumed one must equal."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    assert main(["run", "--config", str(config), "--run-dir", str(run_dir)]) == 0
    assert_finite_outputs(run_dir)
    return run_dir


# --- running, killing, resuming ------------------------------------------------------------------


def kill(config: Path, run_dir: Path, resume: bool = False, **crash: str) -> None:
    """``elm-train run`` in a subprocess with fault injection ``crash``; it must die by SIGKILL."""
    env = {k: v for k, v in os.environ.items() if k not in CRASH_VARS}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **crash)
    cmd = [sys.executable, "-m", "elm_train.cli", "run", "--config", str(config), "--run-dir", str(run_dir)]
    proc = subprocess.run(
        [*cmd, "--resume"] if resume else cmd, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == -signal.SIGKILL, f"{crash}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert not (run_dir / "report" / "done.json").exists()


def resume(config: Path, run_dir: Path) -> int:
    return main(["run", "--config", str(config), "--run-dir", str(run_dir), "--resume"])


def copy_run(source: Path, tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(source, target, symlinks=True)
    return target


def latest(run_dir: Path, ckpts: Path = SUPERNET_CKPTS) -> str:
    return json.loads((run_dir / ckpts / "latest").read_text())["checkpoint"]


def resumed_from(run_dir: Path, stage: str) -> list[str]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["checkpoint"] for r in rows if r.get("stage") == stage and r.get("event") == "resumed"]


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``elm-train: error:`` line of stderr (progress bars and warnings aside)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("elm-train:")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("elm-train: error: "), lines[0]
    return lines[0]


# --- comparing outputs -------------------------------------------------------------------------------


def model_files(run_dir: Path) -> dict[str, Path]:
    """Every weights file the pipeline exports, by its path in the run directory."""
    names = [Path("supernet/final/supernet.safetensors")]
    names += [Path("retrain") / s / "model" / "model.safetensors" for s in STUDENTS]
    names += [Path("tasks") / TASK / who / "model.safetensors" for who in ("teacher", *STUDENTS)]
    return {str(n): run_dir / n for n in names}


def numbers(value: Any, path: str = "") -> dict[str, Any]:
    """The leaves of a JSON value by path, without timings, latencies, memory readings and file
    paths (what the machine, not the run, decides)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if any(word in key for word in ("seconds", "latency", "time", "rss", "_ms")) or key == "files":
                continue
            out.update(numbers(item, f"{path}/{key}"))
        return out
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in numbers(item, f"{path}[{i}]").items()}
    return {path: value}


def assert_finite_outputs(run_dir: Path) -> None:
    """A run that finished holds finite weights and reports finite numbers only."""
    for name, path in model_files(run_dir).items():
        for key, tensor in load_file(str(path)).items():
            assert torch.isfinite(tensor).all(), f"{name}: {key} is not finite"
    report = json.loads((run_dir / "report" / "report.json").read_text())
    for key, value in numbers(report).items():
        assert not (isinstance(value, float) and not math.isfinite(value)), f"report {key} = {value}"


def assert_same_outputs(run_dir: Path, reference: Path) -> None:
    """Bit-identical to the reference: weights, search result, exported tokenizers, report numbers."""
    assert_finite_outputs(run_dir)
    for name, path in model_files(run_dir).items():
        ours, theirs = load_file(str(path)), load_file(str(model_files(reference)[name]))
        assert ours.keys() == theirs.keys(), name
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), f"{name}: {key} differs from the uninterrupted run"
    same_bytes = [
        "supernet/final/space.json",
        "supernet/final/widths.json",
        "search/architecture.json",
        "heads/architecture.json",
        "tokenizer/tokenizer.json",
    ]
    for student in STUDENTS:
        same_bytes += [f"retrain/{student}/model/{f}" for f in ("tokenizer.json", "config.json")]
    for name in same_bytes:
        assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs"
    for name in ("search/result.json", "retrain/done.json", *(f"retrain/{s}/result.json" for s in STUDENTS)):
        ours, theirs = (json.loads((d / name).read_text()) for d in (run_dir, reference))
        assert ours == theirs, f"{name} differs"
    ours, theirs = (
        numbers(json.loads((d / "report" / "report.json").read_text())) for d in (run_dir, reference)
    )
    assert ours == theirs
    assert set(json.loads((run_dir / "report" / "report.json").read_text())["files"]) == set(
        json.loads((reference / "report" / "report.json").read_text())["files"]
    )


# --- the killed runs (built once, copied by each row) -----------------------------------------------


@pytest.fixture(scope="module")
def killed_mid_supernet(config, tmp_path_factory) -> Path:
    """Killed after supernet step 8 of 12: checkpoints of steps 5 and 7 kept, step 7 latest."""
    run_dir = tmp_path_factory.mktemp("mid-supernet") / "run"
    kill(config, run_dir, ELM_TRAIN_CRASH_AFTER_STEP="8")
    assert latest(run_dir) == "step-00000007"
    assert sorted(p.name for _, p in checkpoint.step_dirs(run_dir / SUPERNET_CKPTS)) == [
        "step-00000005",
        "step-00000007",
    ]
    assert not (run_dir / "supernet" / "done.json").exists()
    return run_dir


@pytest.fixture(scope="module")
def killed_in_export(config, tmp_path_factory) -> Path:
    """Killed inside the export of the found model, every file of it written but not published."""
    run_dir = tmp_path_factory.mktemp("in-export") / "run"
    kill(config, run_dir, ELM_TRAIN_CRASH_AT="export/found/model")
    partial = run_dir / "retrain" / "found" / ".tmp-model"
    assert (partial / "config.json").is_file() and (partial / "model.safetensors").is_file()
    assert not (run_dir / "retrain" / "found" / "model").exists()
    assert not (run_dir / "retrain" / "found" / "result.json").exists()
    return run_dir


@pytest.fixture(scope="module")
def killed_mid_baseline(config, killed_in_export, tmp_path_factory) -> Path:
    """The export-killed run resumed and killed again after baseline retraining step 4 of 6 (the
    found model exported and recorded by then)."""
    run_dir = copy_run(killed_in_export, tmp_path_factory.mktemp("mid-baseline"))
    kill(config, run_dir, resume=True, ELM_TRAIN_CRASH_AFTER_STEP="4")
    assert (run_dir / "retrain" / "found" / "result.json").is_file()
    assert latest(run_dir, Path("retrain/baseline/checkpoints")) == "step-00000003"
    assert not (run_dir / "retrain" / "baseline" / "model").exists()
    return run_dir


@pytest.fixture(scope="module")
def killed_mid_tasks(config, killed_mid_baseline, tmp_path_factory) -> Path:
    """The baseline-killed run resumed and killed again after step 2 of the task teacher's
    fine-tuning (retraining finished by then)."""
    run_dir = copy_run(killed_mid_baseline, tmp_path_factory.mktemp("mid-tasks"))
    kill(config, run_dir, resume=True, ELM_TRAIN_CRASH_AFTER_STEP="2")
    assert (run_dir / "retrain" / "done.json").is_file()
    assert not (run_dir / "tasks" / "done.json").exists()
    assert not (run_dir / "tasks" / TASK / "teacher").exists()
    return run_dir


def _left_a_half_written_checkpoint(run_dir: Path) -> None:
    """The supernet's second checkpoint write (step 5, after the growth) was killed with its
    DeepSpeed files, weights and state written and no manifest; step 3 is still latest."""
    partial = run_dir / SUPERNET_CKPTS / ".tmp-step-00000005"
    assert (partial / "model.safetensors").is_file() and (partial / "state.json").is_file()
    assert any((partial / "deepspeed").rglob("*.pt"))
    assert not (partial / "manifest.json").exists()
    assert latest(run_dir) == "step-00000003"


def _left_generation_0(run_dir: Path) -> None:
    """Killed after the 9th of 12 fitness evaluations: generation 0 saved, generation 1 not."""
    state = json.loads((run_dir / "search" / "state.json").read_text())
    assert state["generation"] == 1 and len(state["records"]) == 6
    assert not (run_dir / "search" / "done.json").exists()


def _left_unpublished(final: str, *files: str) -> Callable[[Path], None]:
    """Killed inside the export of ``final``: its files written under a temporary name, nothing
    under the final one."""

    def check(run_dir: Path) -> None:
        partial = (run_dir / final).with_name(f".tmp-{Path(final).name}")
        assert all((partial / f).is_file() for f in files), sorted(p.name for p in partial.iterdir())
        assert not (run_dir / final).exists()

    return check


def _fresh(
    check: Callable[[Path], None], **crash: str
) -> Callable[[pytest.FixtureRequest, Path, Path], Path]:
    """A new run killed by ``crash``, then checked to be in the state the row is about."""

    def killed(request: pytest.FixtureRequest, config: Path, tmp_path: Path) -> Path:
        run_dir = tmp_path / "run"
        kill(config, run_dir, **crash)
        check(run_dir)
        return run_dir

    return killed


def _shared(fixture: str) -> Callable[[pytest.FixtureRequest, Path, Path], Path]:
    """A copy of a killed run a fixture built once (the damage rows and later kills start from it)."""
    return lambda request, config, tmp_path: copy_run(request.getfixturevalue(fixture), tmp_path)


@dataclass(frozen=True)
class Row:
    killed: Callable[[pytest.FixtureRequest, Path, Path], Path]
    """(request, config, tmp_path) -> a run directory as the kill left it (a fresh copy)."""
    check: Callable[[Path], None] = lambda run_dir: None
    """What the resumed run must show besides equal outputs."""


def _resumed_supernet_from(name: str) -> Callable[[Path], None]:
    def check(run_dir: Path) -> None:
        assert resumed_from(run_dir, "supernet")[-1] == name
        assert not list((run_dir / SUPERNET_CKPTS).glob(".tmp-*"))  # the half-written one cleaned

    return check


def _found_loss_kept(run_dir: Path) -> None:
    """The issue's report that lost the found model's final loss after a kill in the baseline."""
    loss = json.loads((run_dir / "retrain" / "done.json").read_text())["found"]["final_loss"]
    assert isinstance(loss, float) and math.isfinite(loss)
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert report["stages"]["retrain"]["found"]["final_loss"] == loss
    assert f"{loss:.4f}" in (run_dir / "report" / "report.md").read_text()
    assert resumed_from(run_dir, "retrain.baseline")[-1] == "step-00000003"


KILL_ROWS = {
    "inside the export of the run's tokenizer": Row(
        _fresh(_left_unpublished("tokenizer", "tokenizer.json"), ELM_TRAIN_CRASH_AT="export/run/tokenizer")
    ),
    "after supernet step 8": Row(_shared("killed_mid_supernet"), _resumed_supernet_from("step-00000007")),
    "inside a supernet checkpoint write": Row(
        _fresh(_left_a_half_written_checkpoint, ELM_TRAIN_CRASH_AT="checkpoint-write/supernet:2"),
        _resumed_supernet_from("step-00000003"),
    ),
    "inside the export of the final supernet": Row(
        _fresh(
            _left_unpublished("supernet/final", "supernet.safetensors", "space.json"),
            ELM_TRAIN_CRASH_AT="export/supernet/final",
        ),
        _resumed_supernet_from("step-00000011"),
    ),
    "between search evaluations": Row(_fresh(_left_generation_0, ELM_TRAIN_CRASH_AT="search-eval:9")),
    "inside the export of the found model": Row(_shared("killed_in_export")),
    "after baseline retraining step 4": Row(_shared("killed_mid_baseline"), _found_loss_kept),
    "after task fine-tuning step 2": Row(_shared("killed_mid_tasks")),
}


@pytest.mark.parametrize("row", list(KILL_ROWS))
def test_a_killed_run_resumes_to_the_uninterrupted_outputs(row, request, config, reference, tmp_path):
    spec = KILL_ROWS[row]
    run_dir = spec.killed(request, config, tmp_path)
    assert resume(config, run_dir) == 0
    assert_same_outputs(run_dir, reference)
    spec.check(run_dir)


# --- a damaged newest checkpoint -----------------------------------------------------------------


def _random_bytes(path: Path, size: int = 4096) -> None:
    """4 KiB of random bytes inside the tensor data (the safetensors header left intact)."""
    data = bytearray(path.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0] + 1024
    assert len(data) - start > size
    data[start : start + size] = os.urandom(size)
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "random bytes in the weights": (lambda ckpt: _random_bytes(ckpt / "model.safetensors"), "SHA-256"),
    "truncated weights": (lambda ckpt: _truncate(ckpt / "model.safetensors"), "truncated"),
    "deleted, latest dangling": (shutil.rmtree, "which does not exist"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_still_matches(
    damage, config, reference, killed_mid_supernet, tmp_path
):
    run_dir = copy_run(killed_mid_supernet, tmp_path)
    newest = run_dir / SUPERNET_CKPTS / "step-00000007"
    harm, reason = DAMAGE[damage]
    harm(newest)
    with pytest.warns(CheckpointWarning) as caught:
        assert resume(config, run_dir) == 0
    messages = [str(w.message) for w in caught if issubclass(w.category, CheckpointWarning)]
    assert any("step-00000007" in m and reason in m and "step-00000005" in m for m in messages), messages
    assert resumed_from(run_dir, "supernet")[-1] == "step-00000005"
    assert_same_outputs(run_dir, reference)


class Payload:
    """What an attacker leaves in a run directory: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("fmt", ["torch.save", "pickle"])
def test_a_crafted_pickle_stops_the_resume_naming_the_file(
    fmt, config, killed_mid_supernet, tmp_path, capsys
):
    run_dir = copy_run(killed_mid_supernet, tmp_path)
    newest = run_dir / SUPERNET_CKPTS / "step-00000007"
    target = newest / "deepspeed" / "mp_rank_00_model_states.pt"
    marker = tmp_path / "pwned"
    if fmt == "torch.save":
        torch.save({"module": Payload(marker), "optimizer": None}, target)
    else:
        target.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    checkpoint.write_manifest(newest, 7)  # whoever can write the directory can rewrite the manifest
    checkpoint.verify(newest)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # refused, not skipped for an older one
        assert resume(config, run_dir) == 2
    line = error_line(capsys)
    assert str(target) in line and "refused to load" in line
    assert not marker.exists()
    assert not (run_dir / "supernet" / "done.json").exists()
    assert not (run_dir / "supernet" / "final").exists()


# --- a second process, a missing run ------------------------------------------------------------------


def test_a_second_process_on_the_run_directory_is_refused(config, reference, capsys):
    before = (reference / "metrics.jsonl").read_bytes()
    with RunLock(reference):
        capsys.readouterr()
        assert resume(config, reference) == 2
        line = error_line(capsys)
    assert f"process {os.getpid()} " in line and str(reference) in line and "in use" in line
    assert (reference / "metrics.jsonl").read_bytes() == before  # nothing ran


def test_resuming_a_run_directory_that_does_not_exist_is_an_error(config, tmp_path, capsys):
    missing = tmp_path / "never-started"
    assert resume(config, missing) == 2
    line = error_line(capsys)
    assert str(missing) in line and "no run to resume" in line
    assert not missing.exists()


# --- non-finite losses -------------------------------------------------------------------------------


@pytest.fixture
def nan_plugin(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    import elm_nan_plugin

    elm_nan_plugin.reset()
    yield elm_nan_plugin
    elm_nan_plugin.reset()


@dataclass(frozen=True)
class NanRow:
    fields: dict[str, Any]
    nan_from: str | None
    """``ELM_TEST_NAN_FROM`` for ``nan-after``: the hidden-loss call from which it is NaN."""
    stage: str
    never: tuple[str, ...]
    """What must not exist afterwards (besides the stage's done.json and the report)."""
    checkpoints: str | None = None


NAN_ROWS = {
    # 7 hidden-loss calls per supernet step: NaN from step 6, after the checkpoints of steps 3 and 5
    "supernet loss": NanRow(
        {"supernet": {"kd": {"hidden_loss": "nan-after"}}},
        "43",
        "supernet",
        ("supernet/final", "search"),
        "supernet/checkpoints",
    ),
    # the found model's retraining diverges part-way
    "retrain loss": NanRow(
        {"retrain": {"kd": {"hidden_loss": "nan-after"}}},
        "20",
        "retrain",
        ("retrain/found/model", "retrain/found/result.json", "tasks"),
        "retrain/found/checkpoints",
    ),
    # the supernet trains finitely, but every held-out fitness is NaN
    "search fitness": NanRow(
        {"supernet": {"kd": {"hidden_loss": "nan-in-eval"}}},
        None,
        "search",
        ("search/result.json", "search/architecture.json", "heads"),
    ),
}


@pytest.mark.parametrize("row", list(NAN_ROWS))
def test_a_non_finite_loss_stops_the_run_and_nothing_is_exported(
    row, nan_plugin, monkeypatch, tiny_teacher_dir, tmp_path, capsys
):
    spec = NAN_ROWS[row]
    config = write_config(tmp_path / "nan.yaml", tiny_teacher_dir, plugins=["elm_nan_plugin"], **spec.fields)
    if spec.nan_from is not None:
        monkeypatch.setenv("ELM_TEST_NAN_FROM", spec.nan_from)
    run_dir = tmp_path / "run"
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--run-dir", str(run_dir)]) == 2
    line = error_line(capsys)
    assert f"error: {spec.stage}" in line and "nan" in line.lower()

    def nothing_exported() -> None:
        assert not (run_dir / spec.stage / "done.json").exists()
        for name in (*spec.never, "report"):
            assert not (run_dir / name).exists(), name
            assert not list((run_dir / name).parent.glob(f".tmp-{Path(name).name}")), name

    nothing_exported()
    if spec.checkpoints is not None:
        last = checkpoint.latest(run_dir / spec.checkpoints)
        if last is not None:  # what was checkpointed before the loss turned NaN is intact and finite
            assert f"the last checkpoint, {last.name}, is intact" in line
            assert all(torch.isfinite(t).all() for t in load_file(str(last / "model.safetensors")).values())
    # resuming cannot turn it into a success either: the loss is still NaN
    capsys.readouterr()
    assert resume(config, run_dir) == 2
    assert "nan" in error_line(capsys).lower()
    nothing_exported()


def test_a_model_whose_held_out_loss_overflows_is_not_reported(config, reference, tmp_path, capsys):
    """Finite weights whose masked-LM logits overflow (what fp16 overflow or a diverging run that
    the training batches did not show would export): the evaluation must not report inf."""
    run_dir = copy_run(reference, tmp_path)
    for stale in [run_dir / "evaluate", run_dir / "report", *(run_dir / "results").glob("lm-*")]:
        fsio.remove_tree(stale)  # the evaluation runs again on resume
    weights_file = run_dir / "retrain" / "found" / "model" / "model.safetensors"
    weights = load_file(str(weights_file))
    bias = weights["lm_head.bias"]
    bias[0::2], bias[1::2] = 3e38, -3e38  # finite, but logsumexp - logit overflows to inf
    save_file(weights, str(weights_file), metadata={"format": "pt"})
    capsys.readouterr()
    assert resume(config, run_dir) == 2
    assert str(weights_file.parent) in error_line(capsys)
    assert not (run_dir / "evaluate" / "done.json").exists()
