"""Two processes under torchrun: the whole pipeline in one launch, equivalence with gradient
accumulation on one process, growth decided on statistics combined over ranks, and resume.

These launch real process groups (gloo on CPU), so they are few and share their runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from elm_train.cli import main
from elm_train.training.multitask_training import WEIGHTS_FILE as MULTITASK_WEIGHTS

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=900)


def write_config(path: Path, teacher: Path, **fields: object) -> Path:
    base = {
        "preset": "tiny",
        "teacher": {"name_or_path": str(teacher)},
        # 8 examples a step on any process count: 4 a rank on two, 4 x 2 accumulated on one
        "deepspeed": {"micro_batch_size": 4, "global_batch_size": 8},
        # no dropout: the two-rank and the accumulating run then see exactly the same arithmetic
        # up to the order of one sum, so their weights are comparable to float tolerance
        "model": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        # METHOD step 2 and the search by held-out task score run on two ranks too
        "multitask": {
            "enabled": True,
            "optim": {"epochs": 1, "max_steps_per_epoch": 4, "lr": 1e-3},
            "checkpoint_every": 2,
        },
        "search": {"fitness": "task"},
    }
    path.write_text(yaml.safe_dump({**base, **fields}))
    return path


def weights(run_dir: Path, stage: str = "supernet") -> dict[str, torch.Tensor]:
    name = {"supernet": "supernet.safetensors", "multitask": MULTITASK_WEIGHTS}[stage]
    return load_file(str(run_dir / stage / "final" / name))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, tiny_teacher_dir):
    """`torchrun --nproc_per_node 2 -m elm_train.cli run` on the tiny preset, in one launch."""
    root = tmp_path_factory.mktemp("two-ranks")
    config = write_config(root / "run.yaml", tiny_teacher_dir)
    run_dir = root / "run"
    done = torchrun("-m", "elm_train.cli", "run", "--config", str(config), "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr[-4000:]
    return config, run_dir, done


def test_the_whole_pipeline_completes_in_one_launch(two_ranks):
    _, run_dir, done = two_ranks
    info = json.loads((run_dir / "supernet" / "done.json").read_text())
    assert info["world_size"] == 2 and info["steps"] == 12  # 96 blocks / (4 x 2) = 12, capped at 6, x2
    assert done.stdout.count("[elm-train] supernet: running") == 1  # only rank 0 speaks
    stages = ("data", "teacher", "supernet", "multitask", "search", "heads", "retrain", "tasks", "evaluate")
    for stage in (*stages, "report"):
        assert (run_dir / stage / "done.json").is_file(), stage
    # no temporary names left behind by two ranks racing for the same file
    assert not [p for p in run_dir.rglob("*") if p.name.startswith(".tmp") or p.name.endswith(".tmp")]
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r.get("stage") == "supernet" and "loss" in r] == list(range(12))
    assert all(t.isfinite().all() for t in weights(run_dir).values())


def test_two_ranks_match_one_rank_with_gradient_accumulation(two_ranks, tmp_path):
    """The same config on 1 process as on 2: a global batch of 8 is micro-batch 4 on each of 2 ranks,
    and micro-batch 4 with 2 accumulation steps on 1 rank: same data per optimizer step, same
    growth, same search and heads; weights equal up to summation order."""
    config, two_dir, _ = two_ranks
    one_dir = tmp_path / "one"
    assert main(["stage", "supernet", "--config", str(config), "--run-dir", str(one_dir)]) == 0
    # the task teacher fine-tunes with its own dropout (0.1), whose draws depend on the rank layout;
    # the multitask stage reuses a fine-tuned teacher, so both sides distil from the same one
    teacher = Path("tasks") / "tweet-sentiment" / "teacher"
    shutil.copytree(two_dir / teacher, one_dir / teacher)
    assert main(["stage", "heads", "--config", str(config), "--run-dir", str(one_dir)]) == 0
    for stage in ("supernet", "multitask"):
        a, b = weights(two_dir, stage), weights(one_dir, stage)
        assert a.keys() == b.keys()
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        print(f"{stage}: two ranks vs one rank accumulating: largest weight difference {worst:.3g}")
        assert worst < 1e-5, (stage, worst)  # measured: 0 (halving is exact in float32)
    assert (two_dir / "multitask" / "split.json").read_text() == (
        one_dir / "multitask" / "split.json"
    ).read_text()
    for name in ("space.json",):
        assert (two_dir / "supernet" / "final" / name).read_text() == (
            one_dir / "supernet" / "final" / name
        ).read_text()
    grown = json.loads((one_dir / "supernet" / "done.json").read_text())["grown_pairs"]
    assert grown == 2
    for stage in ("search", "heads"):
        assert (two_dir / stage / "architecture.json").read_text() == (
            one_dir / stage / "architecture.json"
        ).read_text()


GROWTH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from elm_train.runtime import distributed as dist
    from elm_train.training.pca import PcaTracker

    dist.init_distributed()
    rank = dist.rank()
    local = PcaTracker()
    # rank 0 saw (0, 0) wide and (1, 0) narrow; rank 1 the other way round, more often
    if rank == 0:
        local.add(0, 0, 30); local.add(1, 0, 10)
    else:
        local.add(0, 0, 12); local.add(1, 0, 40); local.add(1, 0, 38)
    combined = local.combined_over_ranks(num_layers=2, num_candidates=1)
    failed = None
    try:
        dist.check_same_on_all_ranks("the test digest", f"rank-{rank}")
    except dist.RankMismatchError as err:
        failed = str(err)
    out = {"local": local.ranking(), "combined": combined.ranking(), "means": sorted(combined.means().items()),
           "mismatch": failed}
    json.dump(out, open(sys.argv[1] + f".{rank}", "w"))
    dist.barrier()
    torch.distributed.destroy_process_group()  # a group left to interpreter exit can abort gloo
    """
)


def test_growth_is_decided_on_statistics_combined_over_ranks(tmp_path):
    script = tmp_path / "growth.py"
    script.write_text(GROWTH_SCRIPT)
    done = torchrun(str(script), str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"out.{r}").read_text()) for r in (0, 1))
    assert r0["local"] != r1["local"]  # alone, the ranks would grow different candidates
    assert r0["combined"] == r1["combined"] == [[1, 0], [0, 0]]
    # combined means are over every batch: (10 + 40 + 38) / 3 and (30 + 12) / 2
    assert r0["means"] == [[[0, 0], 21.0], [[1, 0], 88 / 3]]
    assert r0["mismatch"] and "the test digest differs between ranks" in r0["mismatch"]


def test_killed_rank_resumes_on_two_ranks_bit_identically(two_ranks, tmp_path):
    config, straight, _ = two_ranks
    run_dir = tmp_path / "killed"
    args = ("-m", "elm_train.cli", "stage", "supernet", "--config", str(config), "--run-dir", str(run_dir))
    killed = torchrun(*args, env={**ENV, "ELM_TRAIN_CRASH_AFTER_STEP": "8", "ELM_TRAIN_CRASH_RANK": "1"})
    assert killed.returncode != 0
    assert not (run_dir / "supernet" / "done.json").exists()
    latest = json.loads((run_dir / "supernet" / "checkpoints" / "latest").read_text())["checkpoint"]

    # a checkpoint of 2 ranks is refused on 1, with the reason
    one = tmp_path / "one-rank-copy"
    shutil.copytree(run_dir, one)
    assert main(["stage", "supernet", "--config", str(config), "--run-dir", str(one)]) == 2

    resumed = torchrun(*args)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "resumed" and e["checkpoint"] == latest for e in events)
    a, b = weights(run_dir), weights(straight)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_killed_rank_resumes_the_multitask_stage_bit_identically(two_ranks, tmp_path):
    config, straight, _ = two_ranks
    run_dir = tmp_path / "killed"
    common = ("--config", str(config), "--run-dir", str(run_dir))
    assert torchrun("-m", "elm_train.cli", "stage", "supernet", *common).returncode == 0
    # the same fine-tuned teacher as the straight run (its own fine-tuning is a loop the crash would hit)
    teacher = Path("tasks") / "tweet-sentiment" / "teacher"
    shutil.copytree(straight / teacher, run_dir / teacher)
    crash = {**ENV, "ELM_TRAIN_CRASH_AFTER_STEP": "2", "ELM_TRAIN_CRASH_RANK": "0"}
    killed = torchrun("-m", "elm_train.cli", "stage", "multitask", *common, env=crash)
    assert killed.returncode != 0 and not (run_dir / "multitask" / "done.json").exists()
    resumed = torchrun("-m", "elm_train.cli", "stage", "multitask", *common)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "resumed" and e.get("stage") == "multitask" for e in events)
    a, b = weights(run_dir, "multitask"), weights(straight, "multitask")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
