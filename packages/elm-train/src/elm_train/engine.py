"""The DeepSpeed engine every training loop uses: config, parameter groups, schedule.

The process group it needs comes from :mod:`elm_train.distributed`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from elm_train.config import DeepSpeedConfig, OptimConfig
from elm_train.distributed import init_distributed


def deepspeed_config(ds: DeepSpeedConfig) -> dict[str, Any]:
    return {
        "train_micro_batch_size_per_gpu": ds.micro_batch_size,
        "gradient_accumulation_steps": ds.gradient_accumulation_steps,
        "gradient_clipping": ds.gradient_clipping,
        "zero_optimization": {"stage": ds.zero_stage},
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": ds.precision == "fp16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def param_groups(
    named: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float
) -> list[dict[str, Any]]:
    """No decay on biases and norm weights (they are not scale parameters), as in BERT."""
    decay, no_decay = [], []
    for name, p in named:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_warmup_decay(total_steps: int, warmup_ratio: float) -> Any:
    warmup = max(1, math.ceil(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def build_engine(
    model: torch.nn.Module, ds: DeepSpeedConfig, optim: OptimConfig, total_steps: int
) -> tuple[Any, torch.optim.Optimizer, Any]:
    """A DeepSpeed engine with torch AdamW (no FusedAdam build) and a warm-up/linear-decay schedule."""
    import deepspeed

    init_distributed()
    optimizer = torch.optim.AdamW(param_groups(model.named_parameters(), optim.weight_decay), lr=optim.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(total_steps, optim.warmup_ratio)
    )
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(ds)
    )
    from elm_train import safe_load

    safe_load.install(engine)  # its checkpoints are read without unpickling arbitrary objects
    return engine, optimizer, scheduler
