"""Checkpoints under fault injection: corrupt, truncated, missing, half-written and crafted files.

A real DeepSpeed engine in one process (the gloo group the loops use) on a tiny model; every
checkpoint is the real thing (DeepSpeed's files, the safetensors weights, the manifest).
"""

import json
import os
import pickle
import struct
import warnings

import pytest
import torch

from elm_train.config import DeepSpeedConfig, OptimConfig
from elm_train.runtime import checkpoint, fsio
from elm_train.runtime.checkpoint import CheckpointError, CheckpointWarning, UnsafeCheckpointError
from elm_train.runtime.errors import ElmTrainError
from elm_train.training import engine as dist

torch.set_num_threads(1)

STATE = {"history": [], "extra": {}, "stage": "test"}


def make_engine(zero: int = 0, seed: int = 0, precision: str = "fp32"):
    torch.manual_seed(seed)
    # 2.8k parameters: 11 KB of tensor data, room for a 4 KiB corruption inside it
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 8))
    ds = DeepSpeedConfig(zero_stage=zero, micro_batch_size=4, precision=precision)
    engine, _, _ = dist.build_engine(model, ds, OptimConfig(lr=1e-2, warmup_ratio=0.0), total_steps=50)
    return engine


def train(engine, start: int, stop: int) -> None:
    for step in range(start, stop):
        x = torch.randn(4, 32, generator=torch.Generator().manual_seed(step))
        loss = engine(x.to(next(engine.module.parameters()).dtype)).float().pow(2).mean()
        engine.backward(loss)
        engine.step()


def weights(engine) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in engine.module.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture
def three(tmp_path):
    """Checkpoints after steps 0, 1 and 2 (all kept) and the weights each holds."""
    root = tmp_path / "checkpoints"
    engine = make_engine()
    snapshots = {}
    for step in range(3):
        train(engine, step, step + 1)
        checkpoint.save(root, step, engine, {**STATE, "n": step}, keep=0)
        snapshots[step] = weights(engine)
    return root, snapshots


def restore_quietly(root, engine=None):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        return checkpoint.restore(root, engine or make_engine(seed=1))


def test_a_checkpoint_is_complete_manifested_and_committed(three):
    root, snapshots = three
    assert sorted(p.name for p in root.iterdir()) == [
        "latest",
        "step-00000000",
        "step-00000001",
        "step-00000002",
    ]
    assert json.loads((root / "latest").read_text()) == {"checkpoint": "step-00000002"}
    manifest = checkpoint.verify(root / "step-00000002")
    assert manifest["step"] == 2
    assert {"model.safetensors", "state.json", "deepspeed/mp_rank_00_model_states.pt"} <= set(
        manifest["files"]
    )
    engine = make_engine(seed=1)
    restored = restore_quietly(root, engine)
    assert restored.path.name == "step-00000002" and restored.skipped == []
    assert restored.state["n"] == 2 and restored.state["step"] == 2
    assert_same(weights(engine), snapshots[2])


@pytest.mark.parametrize(
    ("zero", "precision"),
    [
        (0, "fp32"),
        (1, "fp32"),
        (2, "fp32"),
        *(pytest.param(z, "bf16", marks=pytest.mark.precision("bf16")) for z in (0, 2)),
        pytest.param(2, "fp16", marks=pytest.mark.precision("fp16")),
    ],
)
def test_resuming_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, zero, precision):
    """Through the safe (weights_only) loader, with ZeRO's partitioned optimizer state, bf16
    master weights and fp16 loss scaling (the DeepSpeed objects its pickles hold) too."""
    straight = make_engine(zero, precision=precision)
    train(straight, 0, 2)
    checkpoint.save(tmp_path, 1, straight, STATE)
    train(straight, 2, 4)
    resumed = make_engine(zero, seed=1, precision=precision)
    assert restore_quietly(tmp_path, resumed).state["step"] == 1
    train(resumed, 2, 4)
    assert_same(weights(resumed), weights(straight))


def _corrupt_tensor_data(path, size=4096):
    data = bytearray(path.read_bytes())
    header = 8 + struct.unpack("<Q", data[:8])[0]
    assert len(data) - header > 1024 + size  # inside the tensor data, the header untouched
    data[header + 1024 : header + 1024 + size] = os.urandom(size)
    path.write_bytes(bytes(data))


def test_random_bytes_in_the_newest_weights_fall_back_to_the_previous_checkpoint(three):
    root, snapshots = three
    _corrupt_tensor_data(root / "step-00000002" / "model.safetensors")
    engine = make_engine(seed=1)
    with pytest.warns(CheckpointWarning, match=r"step-00000002.*SHA-256.*resuming from step-00000001"):
        restored = checkpoint.restore(root, engine)
    assert restored.path.name == "step-00000001" and restored.state["n"] == 1
    assert [name for name, _ in restored.skipped] == ["step-00000002"]
    assert_same(weights(engine), snapshots[1])
    assert all(torch.isfinite(v).all() for v in weights(engine).values())


@pytest.mark.parametrize("name", ["model.safetensors", "deepspeed/mp_rank_00_model_states.pt", "state.json"])
@pytest.mark.parametrize("how", ["truncated", "empty", "deleted"])
def test_a_truncated_empty_or_missing_file_falls_back(three, name, how):
    root, snapshots = three
    path = root / "step-00000002" / name
    if how == "deleted":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2 if how == "truncated" else 0])
    engine = make_engine(seed=1)
    with pytest.warns(CheckpointWarning, match="step-00000002"):
        restored = checkpoint.restore(root, engine)
    assert restored.path.name == "step-00000001"
    assert_same(weights(engine), snapshots[1])


def test_a_dangling_latest_falls_back_not_to_step_zero(three):
    root, snapshots = three
    fsio.remove_tree(root / "step-00000002")
    engine = make_engine(seed=1)
    with pytest.warns(CheckpointWarning, match=r"latest names step-00000002, which does not exist"):
        restored = checkpoint.restore(root, engine)
    assert restored.path.name == "step-00000001" and restored.state["step"] == 1
    assert_same(weights(engine), snapshots[1])


def test_a_missing_manifest_and_a_lost_pointer_fall_back(three):
    root, _ = three
    (root / "step-00000002" / "manifest.json").unlink()
    (root / "latest").unlink()
    with pytest.warns(CheckpointWarning) as caught:
        restored = checkpoint.restore(root, make_engine(seed=1))
    assert restored.path.name == "step-00000001"
    messages = [str(w.message) for w in caught]
    assert any("latest is missing" in m for m in messages)
    assert any("step-00000002 has no manifest.json" in m for m in messages)


def test_an_unlisted_file_fails_verification(three):
    root, _ = three
    (root / "step-00000002" / "deepspeed" / "extra.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="does not list: deepspeed/extra.pt"):
        checkpoint.verify(root / "step-00000002")


@pytest.mark.parametrize("text", ["", "[]", "{not json", '{"format": "elm-checkpoint/1", "files": []}'])
def test_a_garbled_manifest_fails_verification(three, text):
    root, _ = three
    (root / "step-00000002" / "manifest.json").write_text(text)
    with pytest.raises(
        CheckpointError, match="manifest.json is (unreadable|not an elm-checkpoint/1 manifest)"
    ):
        checkpoint.verify(root / "step-00000002")


def test_no_valid_checkpoint_is_an_error_naming_the_directory(three):
    root, _ = three
    for step in range(3):
        (root / f"step-{step:08d}" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"no valid checkpoint in {root}") as info:
        checkpoint.restore(root, make_engine(seed=1))
    assert isinstance(info.value, ElmTrainError)
    assert all(f"step-0000000{s}" in str(info.value) for s in range(3))


def test_a_pointer_without_checkpoints_is_an_error_not_a_fresh_start(three):
    root, _ = three
    for step in range(3):
        fsio.remove_tree(root / f"step-{step:08d}")
    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        checkpoint.restore(root, make_engine(seed=1))
    assert checkpoint.restore(root.parent / "never-written", make_engine(seed=1)) is None


def test_keep_n_keeps_n(tmp_path):
    engine = make_engine()
    for step in range(5):
        train(engine, step, step + 1)
        checkpoint.save(tmp_path, step, engine, STATE, keep=2)
        assert len(checkpoint.step_dirs(tmp_path)) == min(step + 1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000003", "step-00000004"]
    checkpoint.save(tmp_path, 5, engine, STATE, keep=1)
    assert [p.name for _, p in checkpoint.step_dirs(tmp_path)] == ["step-00000005"]


def test_a_write_killed_midway_is_ignored_and_cleaned(three, monkeypatch):
    root, snapshots = three
    engine = make_engine(seed=2)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the manifest")

    monkeypatch.setattr(checkpoint, "write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(root, 3, engine, STATE, keep=0)
    monkeypatch.undo()
    assert (root / ".tmp-step-00000003" / "model.safetensors").is_file()  # what a kill leaves
    assert json.loads((root / "latest").read_text()) == {"checkpoint": "step-00000002"}
    fresh = make_engine(seed=1)
    restored = restore_quietly(root, fresh)
    assert restored.path.name == "step-00000002"
    assert_same(weights(fresh), snapshots[2])
    assert not (root / ".tmp-step-00000003").exists()  # cleaned


def test_nan_weights_are_never_checkpointed(three):
    root, _ = three
    engine = make_engine()
    with torch.no_grad():
        engine.module[0].weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"step 3: 0\.weight holds non-finite values"):
        checkpoint.save(root, 3, engine, STATE)
    assert not any(p.name.endswith("step-00000003") for p in root.iterdir())
    assert json.loads((root / "latest").read_text()) == {"checkpoint": "step-00000002"}


class Payload:
    """What an attacker puts in a run directory: unpickling it runs a command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("fmt", ["torch.save", "pickle"])
def test_a_crafted_pickle_is_refused_and_never_runs(three, tmp_path, fmt):
    root, _ = three
    target = root / "step-00000002" / "deepspeed" / "mp_rank_00_model_states.pt"
    marker = tmp_path / "pwned"
    if fmt == "torch.save":
        torch.save({"module": Payload(marker), "optimizer": None}, target)
    else:
        target.write_bytes(pickle.dumps(Payload(marker)))
    # the attacker can write the directory, so the manifest verifies
    checkpoint.write_manifest(root / "step-00000002", 2)
    checkpoint.verify(root / "step-00000002")

    with pytest.raises(UnsafeCheckpointError, match=r"refused to load .*mp_rank_00_model_states\.pt") as info:
        checkpoint.restore(root, make_engine(seed=1))
    assert "tampered" in str(info.value) and isinstance(info.value, CheckpointError)
    assert not marker.exists()

    # the payload is real: full unpickling (what DeepSpeed does by itself) would have run it
    if fmt == "torch.save":
        torch.load(target, weights_only=False)
    else:
        pickle.loads(target.read_bytes())
    assert marker.exists()
