"""A GPT-2-style stand-in teacher, trained on the corpus with the LM loss.

Offline there is no pretrained GPT-2 to install, so a causal run can train its own teacher: a
GPT2LMHeadModel of the configured size, trained by the same DeepSpeed loop as every other stage
(checkpoints and resume included). It is reported as a stand-in, because a teacher trained for
minutes on a small corpus is far weaker than GPT-2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from elm_train.config import RunConfig, TeacherTrainConfig
from elm_train.runtime.metrics import MetricsSink, NullMetrics
from elm_train.training.loop import LoopSettings, TrainLoop

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
    stage = "teacher"

    def micro_loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        out = self.engine(
            input_ids=input_ids, attention_mask=mask, labels=input_ids.masked_fill(mask == 0, -100)
        )
        return out.loss, {}


def train_stand_in(
    cfg: TeacherTrainConfig,
    tokenizer: PreTrainedTokenizerBase,
    train: datasets.Dataset,
    run_config: RunConfig,
    *,
    out_dir: Path,
    metrics: MetricsSink | None = None,
) -> tuple[GPT2LMHeadModel, dict[str, Any]]:
    """The trained stand-in and what its training did (steps, final loss)."""
    torch.manual_seed(run_config.seed)
    model = GPT2LMHeadModel(gpt2_config(cfg, tokenizer, positions_needed(run_config)))
    loop = LoopSettings(
        run_config.deepspeed,
        run_config.seed,
        out_dir,
        metrics or NullMetrics(),
        checkpoint_every=run_config.supernet.checkpoint_every,
        pad_id=tokenizer.pad_token_id or 0,
    )
    trainer = TeacherTraining(model, train, cfg.optim, loop)
    history = trainer.train()
    return model, {"steps": trainer.total_steps, "final_loss": history[-1][1] if history else None}
