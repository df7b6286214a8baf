"""Checkpoints on two processes (torchrun, gloo, ZeRO-2): per-rank optimizer files are in the
manifest, a corrupt one makes both ranks fall back together, and a NaN loss on one rank stops both."""

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys, warnings
from pathlib import Path
import datasets, torch
from elm_train.runtime import checkpoint
from elm_train.runtime import distributed as dist
from elm_train.runtime.checkpoint import CheckpointWarning
from elm_train.config import DeepSpeedConfig, OptimConfig
from elm_train.training.loop import LoopSettings, NonFiniteLossError, TrainLoop
from elm_train.runtime.metrics import MetricsLog

torch.set_num_threads(1)
out = Path(sys.argv[1])
dist.init_distributed()
rank = dist.rank()


class Toy(TrainLoop):
    stage = "toy"

    def __init__(self, out_dir, nan_rank=None, seed=0):
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 16))
        self.nan_rank = nan_rank
        data = datasets.Dataset.from_dict({"input_ids": [[(i * 7 + j) % 50 for j in range(6)] for i in range(48)]})
        super().__init__(self.model, data, OptimConfig(lr=1e-2, warmup_ratio=0.0, epochs=1),
                         LoopSettings(DeepSpeedConfig(zero_stage=2, micro_batch_size=4, global_batch_size=8), 0,
                                      out_dir, MetricsLog(out_dir / "metrics.jsonl", enabled=rank == 0),
                                      checkpoint_every=1))

    def micro_loss(self, batch, step):
        loss = self.engine(batch["input_ids"]).pow(2).mean()
        if step == 3 and rank == self.nan_rank:
            loss = loss * float("nan")
        return loss, {"mse": float(loss.detach())}


def weights(loop):
    return {k: v.detach().clone() for k, v in loop.model.state_dict().items()}


# 48 rows / a global batch of 8 (4 a rank) = 6 steps; checkpoints after each, two kept
straight = Toy(out / "straight")
straight.train()
ckpts = out / "straight" / "checkpoints"
names = sorted(checkpoint.verify(ckpts / "step-00000005")["files"])
assert any("zero_pp_rank_1_" in n for n in names) and any("zero_pp_rank_0_" in n for n in names), names
dist.barrier()  # every rank has verified the intact checkpoint before rank 0 damages it

# rank 1's optimizer partition of the newest checkpoint is corrupt: both ranks resume from step 4
if rank == 0:
    victim = next((ckpts / "step-00000005" / "deepspeed").glob("zero_pp_rank_1_*optim_states.pt"))
    data = bytearray(victim.read_bytes()); data[-200] ^= 0xFF; victim.write_bytes(bytes(data))
dist.barrier()
resumed = Toy(out / "straight", seed=1)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    restored = checkpoint.restore(ckpts, resumed.engine)
assert restored.path.name == "step-00000004", restored.path
assert (rank == 0) == any("zero_pp_rank_1_" in str(w.message) for w in caught), [str(w.message) for w in caught]

# a NaN on rank 1 only stops both ranks, naming rank 1
try:
    Toy(out / "nan", nan_rank=1).train()
except NonFiniteLossError as e:
    assert e.step == 3 and "rank(s) 1" in str(e), str(e)
    print(f"rank {rank} stopped: {e}", flush=True)
else:
    raise AssertionError("no NonFiniteLossError")
latest = json.loads((out / "nan" / "checkpoints" / "latest").read_text())
assert latest == {"checkpoint": "step-00000002"}, latest
print(f"rank {rank} ok", flush=True)
"""


@pytest.mark.slow
def test_two_ranks_verify_fall_back_and_stop_together(tmp_path):
    script = tmp_path / "two_ranks.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(
        cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "rank 0 ok" in done.stdout and "rank 1 ok" in done.stdout
    assert done.stdout.count("non-finite loss at step 3") == 2
