"""Process-group helpers: who am I, how many are we, wait for the others, share a small object.

One process without a launcher has no process group, and DeepSpeed would then look for MPI; a
single-rank group is started instead (on an in-memory store: no port, no temporary
files). On CPU, DeepSpeed JIT-compiles a shared-memory all-reduce
op at start-up (about 46 s here) that a single process never uses and that a couple of CPU ranks
gain nothing from, so that build is skipped on CPU. Everything here also works before (or
without) a process group: one process is rank 0 of 1.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any

import torch

TIMEOUT_ENV = "ELM_TRAIN_DIST_TIMEOUT_S"
"""Seconds a collective waits before the process group fails it (torch's default: 30 minutes);
a rank-0 stage does not wait at a collective (see ``pipeline.runner``), so this rarely matters."""


def _timeout() -> dict[str, timedelta]:
    seconds = os.environ.get(TIMEOUT_ENV)
    return {"timeout": timedelta(seconds=float(seconds))} if seconds else {}


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
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo", **_timeout())
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


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``values`` over all ranks (a collective; a copy on one process)."""
    if not _multi_process():
        return values.clone()
    out = values.to(_comm_device())
    torch.distributed.all_reduce(out)
    return out.to(values.device)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the ranks (every rank must pass the same keys); unchanged on one
    process, so a one-process run reports exactly what it computed."""
    if not _multi_process() or not values:
        return values
    keys = sorted(values)
    summed = sum_over_ranks(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64))
    return {k: float(v) / world_size() for k, v in zip(keys, summed.tolist(), strict=True)}


class RankMismatchError(RuntimeError):
    """Ranks that must hold the same state do not: continuing would train different models in one
    synchronised step, so the run stops."""


def check_same_on_all_ranks(what: str, digest: str) -> None:
    """Stop every rank with :class:`RankMismatchError` unless all ranks pass the same ``digest``."""
    if not _multi_process():
        return
    digests: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(digests, digest)
    if len(set(digests)) > 1:
        groups: dict[str, list[int]] = {}
        for r, d in enumerate(digests):
            groups.setdefault(d, []).append(r)
        detail = "; ".join(f"ranks {rs}: {d[:12]}" for d, rs in groups.items())
        raise RankMismatchError(f"{what} differs between ranks ({detail}); the run cannot continue")
