"""The fault-injection hook itself: silent without its variable, a SIGKILL at the n-th time with it."""

import os
import signal
import subprocess
import sys

import pytest

from elm_train.runtime import faults

REACH = """
from elm_train.runtime import faults
for i in range(1, 4):
    faults.maybe_crash("export", "export/found/model")
    print(i, flush=True)
"""


def _reach(spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    if spec is not None:
        env[faults.ENV] = spec
    return subprocess.run([sys.executable, "-c", REACH], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("spec", "printed", "killed"),
    [
        (None, "1 2 3", False),
        ("", "1 2 3", False),
        ("export", "", True),
        ("export/found/model", "", True),
        ("export:2", "1", True),
        ("export/found/model:3", "1 2", True),
        ("export:4", "1 2 3", False),
        ("export/baseline/model", "1 2 3", False),
        ("checkpoint-write", "1 2 3", False),
    ],
)
def test_the_process_dies_at_the_named_point_only(spec, printed, killed):
    proc = _reach(spec)
    assert proc.stdout.split() == printed.split()
    assert proc.returncode == (-signal.SIGKILL if killed else 0), proc.stderr


def test_a_spec_names_a_point_and_a_count():
    assert faults._target("export") == ("export", 1)
    assert faults._target("search-eval:9") == ("search-eval", 9)
    assert faults._target("checkpoint-write/supernet:2") == ("checkpoint-write/supernet", 2)
    assert faults._target("odd:name") == ("odd:name", 1)
    assert faults._target("export:0") == ("export:0", 1)


def test_without_the_variable_nothing_is_counted(monkeypatch):
    monkeypatch.delenv(faults.ENV, raising=False)
    faults.maybe_crash("export")
    assert "export" not in faults._reached
