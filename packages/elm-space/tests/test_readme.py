"""The README's example runs and prints what its comments say."""

import contextlib
import io
import re
from pathlib import Path


def test_readme_example(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("6:M132/132h12|0:B132h12|")
    assert lines[1] == "8916100448256 12650496"
    assert lines[4] == "264 132"
    assert lines[5] == "43 14361744.0 14861705.0"
    for comment in re.findall(r"# (\d[\d ]+\d)$", code, re.M):
        assert comment in out.getvalue()
