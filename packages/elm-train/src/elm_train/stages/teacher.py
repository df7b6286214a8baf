"""Stage 2: the teacher. A checkpoint teacher is described; with ``teacher.train`` a GPT-2-style
stand-in is first trained on the corpus.

Offline there is no pretrained GPT-2 to install, so a causal run can train its own teacher: a
GPT2LMHeadModel of the configured size, trained with the LM loss by the same DeepSpeed loop as
every other stage (checkpoints and resume included) and saved with ``save_pretrained`` where the
later stages load it. It is marked as a stand-in in ``done.json`` and in the report, because a
teacher trained for minutes on a small corpus is far weaker than GPT-2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from elm_train import engine as dist
from elm_train import teacher as teacher_lib
from elm_train.checkpoint import write_json_atomic
from elm_train.config import RunConfig, TeacherTrainConfig
from elm_train.loop import TrainLoop
from elm_train.run import TEACHER_DIR, Run

STAGE = "teacher"
STAND_IN_NOTE = (
    "a GPT-2-style model trained on this run's corpus, because no pretrained GPT-2 installs offline; "
    "with the network set teacher.name_or_path: gpt2 and teacher.train: null"
)


def gpt2_config(cfg: TeacherTrainConfig, tokenizer: PreTrainedTokenizerBase, positions: int) -> GPT2Config:
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=positions,
        n_embd=cfg.hidden,
        n_layer=cfg.layers,
        n_head=cfg.heads,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def positions_needed(config: RunConfig) -> int:
    """Training blocks and the latency probe are the longest inputs the teacher ever sees."""
    return max(config.data.block_size, config.eval.latency_seq_len)


class TeacherTraining(TrainLoop):
    stage = STAGE

    def __init__(self, run: Run, model: GPT2LMHeadModel, out_dir: Path) -> None:
        cfg = run.config
        assert cfg.teacher.train is not None
        super().__init__(
            model,
            run.blocks["train"],
            cfg.deepspeed,
            cfg.teacher.train.optim,
            cfg.seed,
            out_dir,
            run.metrics,
            cfg.supernet.checkpoint_every,
            run.tokenizer.pad_token_id or 0,
        )

    def micro_loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        out = self.engine(
            input_ids=input_ids, attention_mask=mask, labels=input_ids.masked_fill(mask == 0, -100)
        )
        return out.loss, {}


def train_stand_in(run: Run) -> dict[str, Any]:
    """Train, save (model and tokenizer, so the directory is a complete checkpoint) and return
    what the training did."""
    cfg = run.config.teacher.train
    assert cfg is not None
    out = run.stage_dir(STAGE)
    torch.manual_seed(run.config.seed)
    model = GPT2LMHeadModel(gpt2_config(cfg, run.tokenizer, positions_needed(run.config)))
    trainer = TeacherTraining(run, model, out)
    history = trainer.run()
    info = {"steps": trainer.total_steps, "final_loss": history[-1][1] if history else None}
    if dist.rank() == 0:
        write_json_atomic(out / "training.json", info)
        target = run.dir / TEACHER_DIR
        model.eval().save_pretrained(target)
        run.tokenizer.save_pretrained(target)
    dist.barrier()
    return info


def run_stage(run: Run) -> dict[str, Any]:
    stand_in = run.config.teacher.train is not None
    if stand_in and not (run.dir / TEACHER_DIR / "config.json").is_file():
        train_stand_in(run)
    info: dict[str, Any] = {
        "source": run.teacher_source,
        "stand_in": stand_in,
        **teacher_lib.describe(run.teacher),
    }
    if stand_in:
        info["note"] = STAND_IN_NOTE
        info["training"] = json.loads((run.dir / STAGE / "training.json").read_text())
    run.mark_done(STAGE, info)
    return info
