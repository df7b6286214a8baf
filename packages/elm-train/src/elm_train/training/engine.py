"""The DeepSpeed engine every training loop uses: config, parameter groups, schedule.

The process group it needs comes from :mod:`elm_train.runtime.distributed`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from elm_train.config import DeepSpeedConfig, OptimConfig
from elm_train.runtime.distributed import init_distributed
from elm_train.runtime.precision import check_precision


def deepspeed_config(ds: DeepSpeedConfig) -> dict[str, Any]:
    """DeepSpeed's config for ``ds`` as one process of the run takes it (split by
    :func:`elm_train.training.global_batch.split_batch`): DeepSpeed checks that its ``train_batch_size`` is
    the micro-batch x accumulation x processes."""
    return {
        "train_batch_size": ds.global_batch,
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


def mixed_precision_masters(optimizer: Any) -> dict[int, torch.Tensor]:
    """The fp32 master copy of each module parameter, by ``id`` of the parameter, when DeepSpeed
    keeps them in a wrapper of the client optimizer (ZeRO-0 with bf16 or fp16: the module holds
    rounded copies, the torch optimizer and its state see only the fp32 ones); else empty. ZeRO 1-3
    keep theirs in flat partitions, reached through ``deepspeed.utils.safe_get_full_fp32_param``."""
    low, high = getattr(optimizer, "fp16_groups", None), getattr(optimizer, "fp32_groups", None)
    if not low or not high or not isinstance(high[0], list):
        return {}
    return {
        id(p): master
        for low_group, high_group in zip(low, high, strict=True)
        for p, master in zip(low_group, high_group, strict=True)
    }


def full_precision_weights(module: torch.nn.Module, optimizer: Any) -> None:
    """Make ``module`` fp32 again with the weights the optimizer trained, after a bf16/fp16 run.

    Under bf16 or fp16 DeepSpeed casts the module to that dtype and keeps the fp32 weights beside
    it; what a stage exports after training (``save_pretrained``, the supernet's safetensors) is
    then the module. Each parameter gets its fp32 master value (the module's own value, widened,
    where none is kept, e.g. frozen ones), so exports are fp32 whatever the training precision,
    and a run's models compare with an fp32 teacher at one precision. ZeRO-3 partitions are left
    alone. A module already fp32 is unchanged.
    """
    from deepspeed.utils import safe_get_full_fp32_param

    params = list(module.parameters())
    if all(p.dtype == torch.float32 for p in params) or any(hasattr(p, "ds_id") for p in params):
        return
    masters = mixed_precision_masters(optimizer)
    full = {id(p): masters.get(id(p), safe_get_full_fp32_param(p)) for p in params}
    module.float()
    with torch.no_grad():
        for p in params:
            master = full[id(p)]
            if master is not None:
                p.copy_(master.detach().to(p.device).view_as(p))


def build_engine(
    model: torch.nn.Module,
    ds: DeepSpeedConfig,
    optim: OptimConfig,
    total_steps: int,
    monitor: dict[str, Any] | None = None,
) -> tuple[Any, torch.optim.Optimizer, Any]:
    """A DeepSpeed engine with torch AdamW (no FusedAdam build) and a warm-up/linear-decay schedule;
    ``monitor``: the DeepSpeed monitor blocks (``tensorboard``, ``csv_monitor``, ``wandb``) to add."""
    import deepspeed

    check_precision(ds.precision)  # DeepSpeed's own refusal is a bare ValueError from deep inside
    init_distributed()
    optimizer = torch.optim.AdamW(param_groups(model.named_parameters(), optim.weight_decay), lr=optim.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(total_steps, optim.warmup_ratio)
    )
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        config={**deepspeed_config(ds), **(monitor or {})},
    )
    from elm_train.runtime import safe_load

    safe_load.install(engine)  # its checkpoints are read without unpickling arbitrary objects
    return engine, optimizer, scheduler
