"""How many CPU threads torch uses, chosen so that a run next to other work keeps its fair share.

Measured on 2 cores (benchmarks/results/threads.json): the demo's supernet stage (40 steps) takes
9.4 s alone with 2 threads but took 57.7 s next to one other CPU-bound process, because OpenMP
threads spin waiting for a core the other process holds; with 1 thread it took 14.6 s, the fair
share (14.3 s alone on one thread). With this policy: 9.4 s alone, 14.7 s next to the other process.
So the default is: the cores this process may use, divided among the launcher's local ranks, minus
the cores other work keeps busy when the run starts (sampled from /proc/stat over a quarter
second; the load average is a poor guide, since it still counts a run that ended a minute ago,
which once halved a resumed run's speed for nothing). And OpenMP spins
briefly before sleeping (``GOMP_SPINCOUNT``), which bounds the damage when other work starts only
after the run chose its threads (23.8 s instead of 68 s in a hand-run of the same stage) at no cost
alone (9.0 s against 8.8 s).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

THREADS_ENV = "ELM_TRAIN_THREADS"
"""A fixed thread count for every elm-train process (the test suite sets 1, so subprocesses and
in-process runs do the same arithmetic); ``--threads`` wins over it."""

SPIN_ENV = {"GOMP_SPINCOUNT": "10000"}
"""Set before torch loads OpenMP (the CLI does it first thing); an explicit user setting wins."""


def choose_threads(cores: int, local_ranks: int, load: float) -> int:
    """Threads per process: this rank's share of the cores not already busy, at least 1."""
    idle = max(0, cores - math.ceil(max(0.0, load) - 0.25))  # a load of 0.2 is noise, 0.8 is a process
    return max(1, min(cores, idle) // max(1, local_ranks))


def busy_cores(sample: float = 0.25) -> float:
    """Cores other processes keep busy now (this process sleeps while it samples)."""

    def totals() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = totals()
        time.sleep(sample)
        total1, idle1 = totals()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]  # no /proc (not Linux): the load average is what there is
    cores = os.cpu_count() or 1
    spent = max(1, total1 - total0)
    return cores * (1 - (idle1 - idle0) / spent)


def configure(requested: int | None = None) -> int:
    """Set torch's intra-op threads (``requested``, else :func:`choose_threads`); returns the count."""
    import torch

    if requested is None and os.environ.get(THREADS_ENV):
        requested = int(os.environ[THREADS_ENV])
    if requested is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
        requested = choose_threads(cores, local, busy_cores())
    torch.set_num_threads(requested)
    return requested
