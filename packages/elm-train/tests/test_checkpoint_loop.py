"""The training loop around checkpoints: exact resume (also past a corrupt checkpoint) and the
non-finite loss guard. A toy TrainLoop on a real DeepSpeed engine, a few milliseconds a step."""

import json
import os
import struct

import datasets
import pytest
import torch
from safetensors.torch import load_file

from elm_train.config import DeepSpeedConfig, OptimConfig
from elm_train.runtime import checkpoint
from elm_train.runtime.checkpoint import CheckpointWarning
from elm_train.runtime.errors import ElmTrainError
from elm_train.runtime.metrics import MetricsLog
from elm_train.training.loop import LoopSettings, NonFiniteLossError, TrainLoop

torch.set_num_threads(1)


class Interrupted(Exception):
    pass


class Toy(TrainLoop):
    stage = "toy"

    def __init__(self, out_dir, *, zero=0, lr=1e-2, nan_at=None, stop_at=None, seed=0, every=2):
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 16))
        self.nan_at, self.stop_at = nan_at, stop_at
        data = datasets.Dataset.from_dict(
            {"input_ids": [[(i * 7 + j) % 50 for j in range(6)] for i in range(40)]}
        )
        super().__init__(
            self.model,
            data,
            OptimConfig(lr=lr, warmup_ratio=0.0, epochs=2, max_steps_per_epoch=4)
            if lr <= 1
            # a config refuses lr > 1; built without validation, the loop's own guard is what is tested
            else OptimConfig.model_construct(lr=lr, warmup_ratio=0.0, epochs=2, max_steps_per_epoch=4),
            LoopSettings(
                DeepSpeedConfig(zero_stage=zero, micro_batch_size=4, gradient_accumulation_steps=2),
                0,
                out_dir,
                MetricsLog(out_dir / "metrics.jsonl"),
                checkpoint_every=every,
            ),
        )

    def begin_step(self, step):
        if step == self.stop_at:
            raise Interrupted(step)

    def micro_loss(self, batch, step):
        hidden = self.engine(batch["input_ids"])
        mse = hidden.pow(2).mean()
        spread = hidden.std()
        loss = mse + 0.1 * spread
        if step == self.nan_at:
            loss = loss * float("nan")
        return loss, {"mse": float(mse.detach()), "spread": float(spread.detach()), "path": "a-b"}


def final_weights(loop):
    return {k: v.detach().clone() for k, v in loop.model.state_dict().items()}


@pytest.mark.parametrize("zero", [0, 2])
def test_an_interrupted_loop_resumes_to_the_same_weights_even_past_a_corrupt_checkpoint(tmp_path, zero):
    straight = Toy(tmp_path / "straight", zero=zero)
    history = straight.train()
    assert [s for s, _ in history] == list(range(8))

    # interrupted before step 6: checkpoints after steps 3 (epoch end) and 5 are kept (keep=2)
    with pytest.raises(Interrupted):
        Toy(tmp_path / "resumed", zero=zero, stop_at=6).train()
    ckpts = tmp_path / "resumed" / "checkpoints"
    assert [p.name for _, p in checkpoint.step_dirs(ckpts)] == ["step-00000005", "step-00000003"]
    weights = ckpts / "step-00000005" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8 + struct.unpack("<Q", data[:8])[0] + 100] ^= 0xFF  # one flipped byte in the tensor data
    weights.write_bytes(bytes(data))

    resumed = Toy(tmp_path / "resumed", zero=zero, seed=1)
    with pytest.warns(CheckpointWarning, match="step-00000005"):
        history = resumed.train()
    assert [s for s, _ in history] == list(range(8))
    a, b = final_weights(resumed), final_weights(straight)
    assert all(torch.equal(a[k], b[k]) for k in a)
    events = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "checkpoint_skipped" and e["checkpoint"] == "step-00000005" for e in events)
    assert any(e.get("event") == "resumed" and e["step"] == 3 for e in events)
    assert json.loads((ckpts / "latest").read_text()) == {"checkpoint": "step-00000007"}


def test_a_nan_loss_stops_the_stage_naming_step_and_terms(tmp_path):
    loop = Toy(tmp_path, nan_at=4)
    with pytest.raises(NonFiniteLossError) as info:
        loop.train()
    message = str(info.value)
    assert isinstance(info.value, ElmTrainError) and info.value.step == 4
    assert "toy: non-finite loss at step 4 (micro-batch 0)" in message
    assert "loss=nan" in message and "mse=" in message and "spread=" in message and "path=a-b" in message
    assert "step-00000003" in message  # the last checkpoint, intact
    ckpts = tmp_path / "checkpoints"
    assert [p.name for _, p in checkpoint.step_dirs(ckpts)] == ["step-00000003", "step-00000001"]
    assert json.loads((ckpts / "latest").read_text()) == {"checkpoint": "step-00000003"}
    checkpoint.verify(ckpts / "step-00000003")


def test_a_diverging_learning_rate_is_stopped_before_anything_non_finite_is_saved(tmp_path):
    loop = Toy(tmp_path, lr=1e30, every=1)
    with pytest.raises(NonFiniteLossError, match=r"toy: non-finite loss at step \d+ .*loss=(nan|inf)"):
        loop.train()
    assert checkpoint.step_dirs(tmp_path / "checkpoints")  # finite, if absurd, weights were saved
    for _, path in checkpoint.step_dirs(tmp_path / "checkpoints"):
        checkpoint.verify(path)
        assert all(torch.isfinite(t).all() for t in load_file(str(path / "model.safetensors")).values())
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    assert os.environ.get("ELM_TRAIN_CRASH_AFTER_STEP") is None
