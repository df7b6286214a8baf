"""Precision is a fact of the machine: asked of DeepSpeed's accelerator, refused before any stage
runs, and declared by every test that trains at it (the guard in conftest.py).

"Without fp16" is simulated by answering for the accelerator, as an AMD EPYC (no oneDNN fp16
kernels) answers, so these tests mean the same on every CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from elm_train.cli import main
from elm_train.config import DeepSpeedConfig, OptimConfig
from elm_train.runtime import precision
from elm_train.runtime.precision import PrecisionError, accelerator, check_precision
from elm_train.training.engine import build_engine

ASK = precision.unsupported_reason
"""The product's question, taken before the suite's guard (conftest.py) stands in for it."""


@pytest.fixture
def no_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one without fp16 kernels and with bf16 (an AMD EPYC's answers), asked
    through the product's own question rather than the guard's."""
    monkeypatch.setattr(accelerator(), "is_fp16_supported", lambda: False)
    monkeypatch.setattr(accelerator(), "is_bf16_supported", lambda: True)
    monkeypatch.setattr(precision, "unsupported_reason", ASK)


def test_the_reason_and_the_way_out_are_named(no_fp16: None) -> None:
    assert ASK("fp32") is None and ASK("bf16") is None
    reason = ASK("fp16")
    assert reason is not None and "does not support fp16" in reason
    with pytest.raises(PrecisionError, match=r"^deepspeed\.precision: fp16: .*; use fp32 or bf16 instead$"):
        check_precision("fp16")


def test_the_library_refuses_before_deepspeed_does(no_fp16: None) -> None:
    """build_engine names the setting; DeepSpeed's own refusal is a bare ValueError."""
    with pytest.raises(PrecisionError, match="deepspeed.precision"):
        build_engine(
            torch.nn.Linear(4, 4), DeepSpeedConfig(precision="fp16", micro_batch_size=1), OptimConfig(), 1
        )


def _config(tmp_path: Path, teacher: Path, **fields: object) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"preset": "tiny", "teacher": {"name_or_path": str(teacher)}, **fields}))
    return path


def _one_line_error(code: int, err: str) -> str:
    """The error line (after any progress the stages before it printed), and nothing else."""
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("elm-train:")]
    assert len(errors) == 1 and errors[0].startswith("elm-train: error: "), err
    assert err.rstrip().endswith(errors[0]) and "Traceback" not in err
    return errors[0]


def test_fp16_on_a_cpu_without_it_stops_before_any_stage(
    no_fp16: None, tmp_path: Path, tiny_teacher_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, tiny_teacher_dir, deepspeed={"precision": "fp16"})
    run_dir = tmp_path / "run"
    line = _one_line_error(
        main(["run", "--config", str(config), "--run-dir", str(run_dir)]), capsys.readouterr().err
    )
    assert "deepspeed.precision: fp16" in line and "use fp32 or bf16 instead" in line
    assert not run_dir.exists()  # no stage ran, not even the data stage
    # a config may be written for another machine: validating and planning it still work
    assert main(["config", "validate", str(config)]) == 0
    assert main(["run", "--config", str(config), "--plan"]) == 0


def test_a_layer_map_that_does_not_fit_the_teacher_stops_before_any_stage(
    tmp_path: Path, tiny_teacher_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The local teacher's config.json says 3 layers: a map naming layer 5 is refused at once."""
    config = _config(tmp_path, tiny_teacher_dir, retrain={"kd": {"layer_map": [0, 1, 5]}})
    run_dir = tmp_path / "run"
    line = _one_line_error(
        main(["run", "--config", str(config), "--run-dir", str(run_dir)]), capsys.readouterr().err
    )
    assert "retrain.kd.layer_map names teacher layers [5] outside 0..2 (the teacher has 3 layers)" in line
    assert not run_dir.exists()


def test_a_layer_map_is_checked_as_soon_as_the_teacher_loads(tmp_path: Path, tiny_teacher_dir: Path) -> None:
    """Through the Python API (no command preflight), as for a hub teacher known only once
    downloaded: the teacher stage refuses the map before the supernet stage starts."""
    from elm_train.config import ConfigError, load_config
    from elm_train.pipeline import Run, run_all

    config = load_config(_config(tmp_path, tiny_teacher_dir, tasks={"layer_map": [2, 2, 3]}))
    run = Run.open(config, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"tasks\.layer_map names teacher layers \[3\] outside 0\.\.2"):
        run_all(run, echo=lambda _: None)
    assert run.layout.done_marker("data").is_file()
    assert not run.layout.done_marker("supernet").is_file()


def test_fewer_blocks_than_one_global_batch_stop_after_the_data_stage(
    tmp_path: Path, tiny_teacher_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, tiny_teacher_dir, data={"max_train_blocks": 20})  # batch: 8 x 4 = 32
    config_text = yaml.safe_load(config.read_text())
    config_text["deepspeed"] = {"micro_batch_size": 8, "gradient_accumulation_steps": 4}
    config.write_text(yaml.safe_dump(config_text))
    run_dir = tmp_path / "run"
    line = _one_line_error(
        main(["run", "--config", str(config), "--run-dir", str(run_dir)]), capsys.readouterr().err
    )
    assert "data: the corpus gives 20 training blocks of 32 tokens, fewer than one global batch of 32" in line
    assert "(deepspeed.micro_batch_size 8 x deepspeed.gradient_accumulation_steps 4)" in line
    assert not (run_dir / "supernet").exists()


GUARDED = """
import pytest
import torch

from elm_train.config import DeepSpeedConfig, OptimConfig
from elm_train.training.engine import build_engine


def engine(precision):
    config = DeepSpeedConfig(precision=precision, micro_batch_size=1)
    return build_engine(torch.nn.Linear(4, 4), config, OptimConfig(), 1)


@pytest.mark.precision("fp16")
def test_declared_fp16():
    engine("fp16")


@pytest.mark.precision("bf16")
def test_declared_bf16():
    engine("bf16")


def test_undeclared_bf16():
    engine("bf16")


def test_fp32_needs_no_declaration():
    engine("fp32")
"""


def test_the_guard_skips_what_the_machine_lacks_and_fails_what_a_test_did_not_declare(
    no_fp16: None, pytester: pytest.Pytester
) -> None:
    """The suite's own conftest, run on a module of tests: on a CPU without fp16 the fp16 test is
    skipped with DeepSpeed's reason, and a test that trains at bf16 without declaring it fails
    (it would on any machine, so it cannot slip in where bf16 happens to work)."""
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text())
    pytester.makepyfile(test_guarded=GUARDED)
    result = pytester.runpytest_inprocess(
        "-rsf", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestUnknownMarkWarning"
    )
    result.assert_outcomes(passed=2, skipped=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Failed: this test trains at bf16 without @pytest.mark.precision('bf16')*",
            "SKIPPED*needs fp16: DeepSpeed's cpu accelerator does not support fp16 on this machine*",
            "FAILED*test_undeclared_bf16*",
        ]
    )
