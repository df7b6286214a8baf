"""Two processes under torchrun: the distributed path of the supernet stage runs end to end."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file


@pytest.mark.slow
def test_two_process_supernet_training(tmp_path, tiny_teacher_dir):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "preset": "tiny",
                "teacher": {"name_or_path": str(tiny_teacher_dir)},
                "deepspeed": {"micro_batch_size": 4},
            }
        )
    )
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "elm_train.cli", "stage", "supernet", "--config", str(config), "--run-dir", str(run_dir)]  # fmt: skip
    done = subprocess.run(
        cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((run_dir / "supernet" / "done.json").read_text())
    assert info["world_size"] == 2
    assert info["steps"] == 12  # 96 blocks / (4 x 2 ranks) = 12 per epoch, capped at 6, two epochs
    assert done.stdout.count('"world_size": 2') == 1  # only rank 0 reports
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r.get("stage") == "supernet" and "loss" in r] == list(range(12))
    weights = load_file(str(run_dir / "supernet" / "final" / "supernet.safetensors"))
    assert weights and all(t.isfinite().all() for t in weights.values())
