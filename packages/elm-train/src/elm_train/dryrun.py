"""``--dry-run``: build the config's full-size supernet and take two DeepSpeed steps on random
tokens, to find out before a long run whether the model, the engine and memory fit."""

from __future__ import annotations

import resource
import time
from typing import Any

import torch

import elm_space
from elm_space import Family
from elm_train.config import RunConfig
from elm_train.models import ElmSupernet
from elm_train.runtime import distributed as dist
from elm_train.training.engine import build_engine
from elm_train.training.global_batch import split_batch


def dry_run(config: RunConfig, steps: int = 2) -> dict[str, Any]:
    space = config.search_space()
    head = "causal_lm" if space.backbone.family is Family.CAUSAL else "masked_lm"
    torch.manual_seed(config.seed)
    supernet = ElmSupernet(space)
    dist.init_distributed()
    ds = split_batch(config.deepspeed, dist.world_size())  # the micro-batch one process holds
    engine, _, _ = build_engine(supernet, ds, config.supernet.optim, total_steps=steps)
    batch, length = (
        ds.micro_batch_size,
        min(config.data.block_size, space.backbone.max_positions),
    )
    times = []
    for step in range(steps):
        ids = torch.randint(space.backbone.vocab_size, (batch, length), device=engine.device)
        arch = elm_space.sample(space, step)
        start = time.perf_counter()
        loss = engine(ids, arch=arch, labels=ids, head=head).loss
        engine.backward(loss)
        engine.step()
        times.append(time.perf_counter() - start)
    return {
        "space": space.name,
        "supernet_parameters": sum(p.numel() for p in supernet.parameters()),
        "space_size": space.size(),
        "mean_sampled_parameters": elm_space.mean_params(space),
        "batch": [batch, length],
        "step_seconds": [round(t, 3) for t in times],
        "loss": float(loss.detach()),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
