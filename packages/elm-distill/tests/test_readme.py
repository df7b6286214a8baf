"""The package README's examples run as written and do what their comments claim."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_readme_has_both_examples() -> None:
    assert len(python_blocks()) == 2


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
