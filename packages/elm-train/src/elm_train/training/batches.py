"""Deterministic batches and per-step randomness, so a resumed run replays exactly.

Every random choice of step ``s`` (the data order of its epoch, the sampled path, dropout) is
derived from ``(seed, stage, s)``; a run resumed at step ``s`` therefore makes the same choices an
uninterrupted run would, whatever happened before the interruption.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache

import datasets
import numpy as np
import torch

from elm_train.runtime import distributed as dist
from elm_train.runtime.errors import ElmTrainError


def step_rng(seed: int, stage: str, step: int) -> random.Random:
    """A ``random.Random`` for one step; string seeds hash with SHA-512, stable across processes."""
    return random.Random(f"{seed}:{stage}:{step}")


def seed_torch(seed: int, stage: str, step: int, rank: int = 0) -> None:
    """Torch's generator for one step on one rank (dropout, masking): every rank draws its own,
    and rank 0 draws what a one-process run draws."""
    label = stage if rank == 0 else f"{stage}:rank{rank}"
    torch.manual_seed(step_rng(seed, label, step).getrandbits(63))


@lru_cache(maxsize=2)
def epoch_order(num_items: int, seed: int, epoch: int) -> np.ndarray:
    """The blocks' order in ``epoch``: a read-only NumPy permutation drawn from ``(seed, epoch)``
    (4 bytes a block: the paper's corpus has hundreds of millions of blocks, which a Python tuple
    of every index would hold at 36 bytes each)."""
    key = int.from_bytes(hashlib.sha256(f"{seed}:order:{epoch}".encode()).digest()[:8], "little")
    dtype = np.int32 if num_items < np.iinfo(np.int32).max else np.int64
    order = np.arange(num_items, dtype=dtype)
    np.random.default_rng(key).shuffle(order)
    order.flags.writeable = False
    return order


def steps_per_epoch(num_items: int, global_batch: int, cap: int | None) -> int:
    """Whole global batches in an epoch (a partial last batch is dropped), at most ``cap``."""
    steps = num_items // global_batch
    if steps == 0:
        raise ElmTrainError(
            f"only {num_items} training examples, fewer than one global batch of {global_batch} "
            "(deepspeed.global_batch_size, or the stage's batch_size); lower the batch or give more data"
        )
    return min(steps, cap) if cap else steps


def collate(rows: dict[str, list], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Rows of token ids (and optional labels) to padded tensors with an attention mask."""
    ids = rows["input_ids"]
    length = max(len(r) for r in ids)
    out = {
        "input_ids": torch.tensor([r + [pad_id] * (length - len(r)) for r in ids], dtype=torch.long),
        "attention_mask": torch.tensor(
            [[1] * len(r) + [0] * (length - len(r)) for r in ids], dtype=torch.long
        ),
    }
    if "token_type_ids" in rows:
        out["token_type_ids"] = torch.tensor(
            [r + [0] * (length - len(r)) for r in rows["token_type_ids"]], dtype=torch.long
        )
    if "labels" in rows:
        out["labels"] = torch.tensor(rows["labels"])
    return out


def train_batch(
    data: datasets.Dataset,
    seed: int,
    step: int,
    per_epoch: int,
    micro_batch: int,
    accumulation: int,
    micro: int,
    pad_id: int = 0,
) -> dict[str, torch.Tensor]:
    """Micro-batch ``micro`` of optimizer step ``step`` for this rank, as padded tensors; its rows
    are read from ``data`` (memory-mapped Arrow blocks) by index, so a rank holds one batch."""
    epoch, index = divmod(step, per_epoch)
    order = epoch_order(len(data), seed, epoch)
    global_batch = micro_batch * accumulation * dist.world_size()
    start = index * global_batch + (micro * dist.world_size() + dist.rank()) * micro_batch
    return collate(data[order[start : start + micro_batch].tolist()], pad_id)


def eval_batches(
    data: datasets.Dataset, batch_size: int, limit: int | None, pad_id: int = 0
) -> list[dict[str, torch.Tensor]]:
    """The first ``limit`` batches of a split, in order: the same held-out data for every score."""
    n = len(data) if limit is None else min(len(data), limit * batch_size)
    return [collate(data[i : min(i + batch_size, n)], pad_id) for i in range(0, n, batch_size)]
