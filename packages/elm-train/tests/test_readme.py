"""The README's Python example runs as written (it is the library layer's promise)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_example_trains_and_searches(capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    result, trainer = scope["result"], scope["trainer"]
    assert result.best is not None and result.evaluations >= 6
    assert trainer.grown_pairs == 2  # tiny: two candidates grow after the first of two epochs
    printed = capsys.readouterr().out
    assert "supernet: 12 steps" in printed and "best path:" in printed
