"""The supernet stage really trains through DeepSpeed's engine, single-path, and resumes exactly."""

import json
import os
import subprocess
import sys

import deepspeed
import pytest
import torch
import yaml
from safetensors.torch import load_file

from elm_train.config import TeacherConfig
from elm_train.pipeline import Run
from elm_train.presets import preset
from elm_train.training.batches import train_batch
from elm_train.training.loop import LoopSettings
from elm_train.training.supernet_training import SupernetTraining


@pytest.fixture
def tiny_run(tmp_path, tiny_teacher_dir):
    config = preset("tiny").model_copy(update={"teacher": TeacherConfig(name_or_path=str(tiny_teacher_dir))})
    return Run.open(config, tmp_path / "run")


def test_steps_go_through_the_deepspeed_engine(tiny_run):
    from elm_train.pipeline import run_stage

    run_stage(tiny_run, "data", echo=lambda _: None)
    cfg = tiny_run.config
    trainer = SupernetTraining(
        tiny_run.initial_space,
        tiny_run.teacher_features,
        tiny_run.blocks["train"],
        cfg.supernet,
        LoopSettings(cfg.deepspeed, seed=cfg.seed, out_dir=tiny_run.stage_dir("supernet")),
    )
    assert isinstance(trainer.engine, deepspeed.DeepSpeedEngine)
    supernet = trainer.supernet
    before = {k: v.detach().clone() for k, v in supernet.state_dict().items()}
    trainer.begin_step(0)
    arch = trainer.arch
    batch = train_batch(trainer.data, trainer.seed, 0, trainer.per_epoch, 8, 1, 0)
    loss, _ = trainer.micro_loss(batch, 0)
    trainer.engine.backward(loss)
    trainer.before_optimizer_step(0)
    trainer.engine.step()
    assert trainer.engine.global_steps == 1
    after = supernet.state_dict()
    for i, choice in enumerate(arch.layers):
        for j in range(len(supernet.layers[i])):
            prefix = f"layers.{i}.{j}."
            changed = any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))
            # single-path: only the sampled candidate of each layer moves (no decay, no momentum elsewhere)
            assert changed == (j == choice.candidate), (i, j)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path, tiny_teacher_dir):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"preset": "tiny", "teacher": {"name_or_path": str(tiny_teacher_dir)}}))

    def supernet_stage(run_dir, crash_after=None):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if crash_after is not None:
            env["ELM_TRAIN_CRASH_AFTER_STEP"] = str(crash_after)
        cmd = [
            sys.executable,
            "-m",
            "elm_train.cli",
            "stage",
            "supernet",
            "--config",
            str(config),
            "--run-dir",
            str(run_dir),
        ]
        return subprocess.run(cmd, env=env, capture_output=True, text=True)

    # 2 epochs x 6 steps; checkpoints after steps 3, 5 (epoch end, after growth) and 7; killed after step 8
    killed = supernet_stage(tmp_path / "resumed", crash_after=8)
    assert killed.returncode == -9, killed.stderr[-2000:]
    latest = json.loads((tmp_path / "resumed" / "supernet" / "checkpoints" / "latest").read_text())
    assert latest == {"checkpoint": "step-00000007"}
    assert not (tmp_path / "resumed" / "supernet" / "done.json").exists()
    resumed = supernet_stage(tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = supernet_stage(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]

    a = load_file(str(tmp_path / "resumed" / "supernet" / "final" / "supernet.safetensors"))
    b = load_file(str(tmp_path / "straight" / "supernet" / "final" / "supernet.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    space_a = (tmp_path / "resumed" / "supernet" / "final" / "space.json").read_text()
    assert space_a == (tmp_path / "straight" / "supernet" / "final" / "space.json").read_text()
    events = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "resumed" and e["step"] == 7 for e in events)
