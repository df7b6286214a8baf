"""The thread policy: a run keeps to its share of the cores other work leaves free."""

from __future__ import annotations

import pytest
import torch

from elm_train.cli import main
from elm_train.runtime.threads import choose_threads, configure


@pytest.mark.parametrize(
    ("cores", "ranks", "load", "expected"),
    [
        (2, 1, 0.0, 2),  # alone: every core
        (2, 1, 0.1, 2),  # background noise is not a process
        (2, 1, 1.0, 1),  # one other CPU-bound process: the other core (the measured fair share)
        (2, 1, 3.0, 1),  # overloaded: never below one thread
        (16, 2, 0.0, 8),  # two local ranks split the cores
        (16, 2, 4.0, 6),
        (16, 4, 15.9, 1),
    ],
)
def test_choose_threads(cores, ranks, load, expected):
    assert choose_threads(cores, ranks, load) == expected


def test_configure_and_the_cli_option(tmp_path, capsys):
    before = torch.get_num_threads()
    try:
        assert configure(1) == 1 and torch.get_num_threads() == 1
        # in-process calls keep the caller's setting unless --threads says otherwise
        code = main(["run", "--preset", "tiny", "--threads", "0", "--run-dir", str(tmp_path / "r")])
        assert code == 2 and "--threads 0: must be at least 1" in capsys.readouterr().err
        assert main(["config", "show", "--preset", "tiny"]) == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
