"""The paper preset's global batch on one and on two processes: the same optimizer steps per epoch,
the same examples in each step.

elm-small's settings (256 blocks a step, at most 64 a process at once) on the paper stand-ins, one
uncapped supernet epoch over 1,024 blocks: 4 steps on one process (64 x 4 accumulated) and 4 under
``torchrun --nproc_per_node 2`` (64 x 2 on each rank); before the global batch was fixed, two
processes took 512 blocks a step and 2 steps. Dropout is off and the precision fp32 so that the two
runs' arithmetic differs only in the order of one sum: equal losses at every step and equal
weights then show that each step trained on the same blocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from elm_train.cli import main
from elm_train.presets import preset

from .conftest import WIKIPEDIA, PaperHub, write_wikipedia
from .test_paper_presets import cut

pytestmark = [pytest.mark.paper, pytest.mark.slow]

BLOCKS = 1024


def supernet_steps(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("stage") == "supernet" and "loss" in r]


def test_two_processes_take_the_steps_of_one(paper_hub: PaperHub, tmp_path: Path) -> None:
    paper = preset("elm-small")
    changes = cut("elm-small", paper_hub, layers=paper.search_space().num_layers)
    # a corpus of more than four global batches (the session's stand-in holds fewer than two)
    # (a directory name of its own: datasets caches a local copy under its name, and the session's
    # stand-in, read by the other paper tests, is called wikipedia)
    bigger = write_wikipedia(tmp_path / "wikipedia-600-documents", documents=600)
    changes["hub_mirrors"][WIKIPEDIA] = str(bigger)
    changes["data"]["max_train_blocks"] = BLOCKS
    changes["supernet"] = {"optim": {"epochs": 1, "max_steps_per_epoch": None}, "checkpoint_every": 1000}
    changes["deepspeed"] = {"precision": "fp32"}
    changes["model"] = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"preset": "elm-small", **changes}))

    one = tmp_path / "one"
    assert main(["stage", "supernet", "--config", str(config), "--run-dir", str(one), "--threads", "1"]) == 0
    two = tmp_path / "two"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["-m", "elm_train.cli", "stage", "supernet", "--config", str(config), "--run-dir", str(two)]
    done = subprocess.run(
        [*launch, *args, "--threads", "1"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    for run_dir, world in ((one, 1), (two, 2)):
        data = json.loads((run_dir / "data" / "done.json").read_text())
        assert data["splits"]["train"]["blocks"] == BLOCKS
        info = json.loads((run_dir / "supernet" / "done.json").read_text())
        assert info["world_size"] == world and info["steps"] == BLOCKS // 256  # not 1,024 / 512 on two
    a, b = supernet_steps(one), supernet_steps(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 1, 2, 3]
    assert [r["examples"] for r in a] == [r["examples"] for r in b] == [256] * 4  # summed over the ranks
    for x, y in zip(a, b, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5), (x["step"], x["loss"], y["loss"])
    wa = load_file(str(one / "supernet" / "final" / "supernet.safetensors"))
    wb = load_file(str(two / "supernet" / "final" / "supernet.safetensors"))
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    print(f"one vs two processes: {len(a)} steps each, largest weight difference {worst:.3g}")
    # Adam divides each gradient by its own running scale, so where a gradient is about 0 the two
    # summation orders can move a weight differently by up to one learning rate (1e-4) a step
    # (measured over the 4 steps: 5.9e-5, and 1.1e-4 with the NumPy epoch order's other blocks);
    # the losses above, equal at every step, are the closer check
    assert worst < len(a) * paper.supernet.optim.lr
