"""DeepSpeed engine set-up that works the same in one plain process, under torchrun, and on GPUs.

One process without a launcher has no process group, and DeepSpeed would then look for MPI; we
start a single-rank gloo group on an in-memory store instead (no port, no temporary files). On CPU, DeepSpeed
JIT-compiles a shared-memory all-reduce op at start-up (about 46 s here) that a single process
never uses and that a couple of CPU ranks gain nothing from, so that build is skipped on CPU.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from typing import Any

import torch

from elm_train.config import DeepSpeedConfig, OptimConfig


def is_launched() -> bool:
    """Started by torchrun or the deepspeed launcher (several processes, or one told its rank)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed() -> None:
    """Join the launcher's process group, or start a one-rank group for a plain process."""
    import deepspeed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    if not torch.cuda.is_available():
        # a JIT build (about a minute) of an all-reduce that only beats gloo on big CPU hosts
        comm_torch = sys.modules.get("deepspeed.comm.torch")
        if comm_torch is not None:
            comm_torch.build_shm_op = lambda: None
    if is_launched():
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
        return
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    # one rank needs no rendezvous: an in-memory store leaves nothing behind (a file store's
    # temporary directory outlived every process)
    torch.distributed.init_process_group(
        backend="nccl" if torch.cuda.is_available() else "gloo",
        store=torch.distributed.HashStore(),
        rank=0,
        world_size=1,
    )
    deepspeed.init_distributed(dist_backend=torch.distributed.get_backend())


def world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def rank() -> int:
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def barrier() -> None:
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()


def _multi_process() -> bool:
    return torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def _comm_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (plain data: it is pickled between our own ranks)."""
    if not _multi_process():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def ranks_where(flag: bool) -> list[int]:
    """The ranks on which ``flag`` is true (a collective: every rank must call)."""
    if not _multi_process():
        return [rank()] if flag else []
    votes = torch.zeros(world_size(), dtype=torch.int32, device=_comm_device())
    votes[rank()] = int(flag)
    torch.distributed.all_reduce(votes)
    return [r for r, v in enumerate(votes.tolist()) if v]


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
