"""DistillationTrainer: its loss is the objective computed by hand, and it trains, accumulates,
evaluates, checkpoints and resumes like a stock Trainer (tiny BERTs, a few steps)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate")
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification, TrainerCallback, TrainingArguments

from elm_distill import DistillationLoss, dist_loss, pearson_hidden_loss
from elm_distill.hf import OBJECTIVE_ATTR, OBJECTIVE_WEIGHTS, DistillationTrainer

CONFIG = {
    "terms": [
        {"loss": "pearson", "features": "layers", "projection": "hidden"},
        {"loss": "dist", "features": "logits", "weight": 0.5},
    ],
    "temperature": 2.0,
    "layer_map": {"kind": "uniform_last"},  # student layer 0 <- teacher 1, 1 <- 3
    "projections": {"hidden": {"student_widths": [32], "teacher_width": 48}},
}


class StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def bert(width: int, layers: int, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * width,
        max_position_embeddings=32,
        num_labels=3,
        hidden_dropout_prob=0.0,  # deterministic, so a hand computation can match exactly
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config)


def examples(n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = 4 + i % 5
        ids = torch.randint(1, 100, (8,), generator=generator)
        mask = (torch.arange(8) < length).long()
        rows.append({"input_ids": ids * mask, "attention_mask": mask, "labels": torch.tensor(i % 3)})
    return rows


def arguments(tmp_path, **overrides) -> TrainingArguments:
    settings = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "learning_rate": 1e-2,
        "report_to": [],
        "use_cpu": True,
        "seed": 0,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "save_strategy": "no",
    }
    return TrainingArguments(**{**settings, **overrides})


def test_loss_equals_the_objective_computed_by_hand(tmp_path) -> None:
    student, teacher = bert(32, 2, seed=1), bert(48, 4, seed=2)
    trainer = DistillationTrainer(
        model=student, args=arguments(tmp_path), teacher=teacher, distill_config=CONFIG, task_loss_weight=0.3
    )
    batch = {
        key: torch.stack([row[key] for row in examples(4)])
        for key in ("input_ids", "attention_mask", "labels")
    }
    loss = trainer.compute_loss(student, dict(batch))

    mask = batch["attention_mask"]
    with torch.no_grad():
        t_out = teacher(input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True)
    s_out = student(**batch, output_hidden_states=True)
    projection = trainer.objective.projections["hidden"]
    hidden = sum(
        pearson_hidden_loss(projection(s_out.hidden_states[s + 1]), t_out.hidden_states[t + 1], mask)
        for s, t in [(0, 1), (1, 3)]
    )
    logits = 0.5 * dist_loss(s_out.logits, t_out.logits, temperature=2.0)
    expected = hidden + logits + 0.3 * s_out.loss
    torch.testing.assert_close(loss, expected)
    assert loss.requires_grad

    # Each term is logged with the loss; the terms add up to it.
    logs = {"loss": float(loss.detach())}
    trainer.log(logs)
    assert logs["distill/layers.pearson"] == pytest.approx(float(hidden.detach()), rel=1e-5)
    assert logs["distill/logits.dist"] == pytest.approx(float(logits.detach()), rel=1e-5)
    assert logs["distill/task"] == pytest.approx(0.3 * float(s_out.loss.detach()), rel=1e-5)

    # Without the task loss, the labels never reach the student and the objective is the loss.
    trainer.task_loss_weight = 0.0
    torch.testing.assert_close(trainer.compute_loss(student, dict(batch)), hidden + logits)
    assert teacher.training is False
    assert not any(p.requires_grad for p in teacher.parameters())


def test_trains_accumulates_evaluates_checkpoints_and_resumes(tmp_path) -> None:
    data, held_out = examples(16), examples(8, seed=1)

    def trainer_for(output, **overrides) -> DistillationTrainer:
        return DistillationTrainer(
            model=bert(32, 2, seed=1),
            args=arguments(output, gradient_accumulation_steps=2, max_steps=4, logging_steps=2, **overrides),
            teacher=bert(48, 4, seed=2),
            distill_config=CONFIG,
            train_dataset=data,
            eval_dataset=held_out,
        )

    straight = trainer_for(tmp_path / "straight")
    before = {k: v.clone() for k, v in straight.objective.state_dict().items()}
    straight.train()
    logged = [entry for entry in straight.state.log_history if "loss" in entry]
    assert len(logged) == 2 and {"distill/layers.pearson", "distill/logits.dist", "distill/task"} <= set(
        logged[0]
    )
    after = straight.objective.state_dict()
    # Attached for training only: afterwards the student is itself again.
    assert OBJECTIVE_ATTR not in dict(straight.model.named_children())
    assert straight.model.num_parameters() == bert(32, 2, seed=1).num_parameters()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the projection was not trained"
    metrics = straight.evaluate()
    assert {"eval_loss", "eval_distill/layers.pearson", "eval_distill/logits.dist"} <= set(metrics)

    # Saved directories hold a clean student and the projections beside it.
    straight.save_model(str(tmp_path / "final"))
    weights = load_file(str(tmp_path / "final" / "model.safetensors"))
    assert not any(key.startswith(OBJECTIVE_ATTR) for key in weights)
    saved = load_file(str(tmp_path / "final" / OBJECTIVE_WEIGHTS))
    assert all(torch.equal(saved[k], after[k]) for k in after)
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "final")
    student = straight.model
    assert all(torch.equal(p, student.state_dict()[k]) for k, p in reloaded.state_dict().items())

    # Two steps, a checkpoint, and a resumed run reaches the same weights and projections.
    first = trainer_for(tmp_path / "resumed", save_strategy="steps", save_steps=2)
    first.add_callback(StopAt(2))  # a run killed after step 2, schedule unchanged
    first.train()
    checkpoint = tmp_path / "resumed" / "checkpoint-2"
    assert (checkpoint / OBJECTIVE_WEIGHTS).is_file()
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 2
    resumed = trainer_for(tmp_path / "resumed", save_strategy="steps", save_steps=2)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for key, value in straight.objective.state_dict().items():
        torch.testing.assert_close(resumed.objective.state_dict()[key], value)
    resumed_state = resumed.model.state_dict()
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed_state[key], value)


def test_an_optimizer_without_the_projections_is_refused(tmp_path) -> None:
    student = bert(32, 2, seed=1)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="projection parameters"):
        DistillationTrainer(
            model=student,
            args=arguments(tmp_path),
            teacher=bert(48, 4, seed=2),
            distill_config=CONFIG,
            optimizers=(optimizer, None),
        )


DEEPSPEED_RUN = """
import json, os, sys
import torch
torch.set_num_threads(1)
import deepspeed  # noqa: F401  (selects its CPU accelerator)
sys.modules["deepspeed.comm.torch"].build_shm_op = lambda *args, **kwargs: None  # skip a 46 s JIT build
import importlib.util
spec = importlib.util.spec_from_file_location("helpers", sys.argv[1])
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
from elm_distill.hf import OBJECTIVE_WEIGHTS, DistillationTrainer
config = {
    "zero_optimization": {"stage": 2},
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto", "torch_adam": True}},
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
}
def trainer(output, *callbacks):
    args = helpers.arguments(output, gradient_accumulation_steps=2, max_steps=4, logging_steps=2,
                             deepspeed=config, save_strategy="steps", save_steps=2)
    return DistillationTrainer(model=helpers.bert(32, 2, seed=1), args=args, teacher=helpers.bert(48, 4, seed=2),
                               distill_config=helpers.CONFIG, train_dataset=helpers.examples(16),
                               callbacks=list(callbacks))
root = sys.argv[2]
straight = trainer(root + "/straight")
before = {k: v.clone() for k, v in straight.objective.state_dict().items()}
straight.train()
first = trainer(root + "/resumed", helpers.StopAt(2))
first.train()
resumed = trainer(root + "/resumed")
resumed.train(resume_from_checkpoint=root + "/resumed/checkpoint-2")
final = {k: v.cpu() for k, v in straight.objective.state_dict().items()}
print("RESULT " + json.dumps({
    "trained": any(not torch.equal(before[k], final[k]) for k in before),
    "resumed_max_diff": max(float((resumed.objective.state_dict()[k].cpu() - v).abs().max()) for k, v in final.items()),
    "sidecar": os.path.isfile(root + "/resumed/checkpoint-2/" + OBJECTIVE_WEIGHTS),
    "logged": sorted(k for e in straight.state.log_history for k in e if k.startswith("distill/")),
}))
"""


@pytest.mark.slow
def test_deepspeed_zero2_trains_and_resumes_the_projections(tmp_path) -> None:
    """An optimizer named in the DeepSpeed config sees the projections; its checkpoint restores them."""
    pytest.importorskip("deepspeed")
    with socket.socket() as probe:  # a free port for the one-process gloo group
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "LOCAL_RANK": "0",
        "RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": "1",
    }
    run = subprocess.run(
        [sys.executable, "-c", DEEPSPEED_RUN, __file__, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    assert result["trained"] and result["sidecar"]
    assert result["resumed_max_diff"] < 1e-6
    assert {"distill/layers.pearson", "distill/logits.dist", "distill/task"} <= set(result["logged"])


def test_an_optimizer_with_the_projections_is_taken(tmp_path) -> None:
    student = bert(32, 2, seed=1)
    objective = DistillationLoss(CONFIG)
    optimizer = torch.optim.AdamW([*student.parameters(), *objective.parameters()], lr=1e-3)
    trainer = DistillationTrainer(
        model=student,
        args=arguments(tmp_path, max_steps=1),
        teacher=bert(48, 4, seed=2),
        distill_config=objective,
        optimizers=(optimizer, None),
        train_dataset=examples(4),
    )
    before = objective.projections["hidden"].maps["32"].weight.clone()
    trainer.train()
    assert trainer.objective is objective
    assert not torch.equal(before, objective.projections["hidden"].maps["32"].weight)


def test_load_best_model_at_end_restores_the_best_projections(tmp_path) -> None:
    trainer = DistillationTrainer(
        model=bert(32, 2, seed=1),
        args=arguments(
            tmp_path,
            max_steps=3,
            eval_strategy="steps",
            eval_steps=1,
            save_strategy="steps",
            save_steps=1,
            load_best_model_at_end=True,
            # "best" is the highest distillation loss: an early checkpoint, so restoring it shows
            metric_for_best_model="eval_distill/layers.pearson",
            greater_is_better=True,
        ),
        teacher=bert(48, 4, seed=2),
        distill_config=CONFIG,
        train_dataset=examples(12),
        eval_dataset=examples(8, seed=1),
    )
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None and not best.endswith("checkpoint-3")
    saved = load_file(str(Path(best) / OBJECTIVE_WEIGHTS))
    for key, value in trainer.objective.state_dict().items():
        assert torch.equal(saved[key], value)
    weights = load_file(str(Path(best) / "model.safetensors"))
    for key, value in trainer.model.state_dict().items():
        if key in weights:
            assert torch.equal(weights[key], value)
