"""Fault injection for tests: kill the process at a named point of the pipeline.

Test-only. Setting ``ELM_TRAIN_CRASH_AT=<point>`` makes the process SIGKILL itself (no cleanup,
no ``finally``, no flushed buffers: what a power cut or the OOM killer leaves) the first time
:func:`maybe_crash` reaches ``point``; ``<point>:<n>`` kills it the ``n``-th time instead. Without
the variable the hook is one environment lookup. The points:

``checkpoint-write``, ``checkpoint-write/<loop>``
    inside :func:`elm_train.runtime.checkpoint.save`, after the DeepSpeed files, the weights and the
    state are written into the temporary directory and before the manifest and the rename
    (``<loop>``: the training loop's stage name, e.g. ``supernet``, ``retrain.baseline``).
``export``, ``export/<parent>/<name>``
    inside :func:`elm_train.runtime.fsio.atomic_directory`, after the block wrote the whole directory
    and before it is synced and published (``retrain/found/model`` is ``export/found/model``).
``data-shard``
    in the data stage, after a chunk's blocks are written to their shard's temporary file and
    before the shard is renamed and listed as finished (a resumed stage redoes that chunk).
``search-eval``
    in the search stage, after each fitness evaluation finished (before the generation it
    belongs to is saved).

``ELM_TRAIN_CRASH_AFTER_STEP`` (:mod:`elm_train.training.loop`) kills after a training step instead.
"""

from __future__ import annotations

import os
import signal

ENV = "ELM_TRAIN_CRASH_AT"

_reached: dict[str, int] = {}
"""How often each point was reached in this process (counted only while ``ENV`` is set)."""


def _target(spec: str) -> tuple[str, int]:
    point, sep, nth = spec.rpartition(":")
    if sep and nth.isdigit() and int(nth) > 0:
        return point, int(nth)
    return spec, 1


def maybe_crash(*points: str) -> None:
    """SIGKILL this process if ``ELM_TRAIN_CRASH_AT`` names one of ``points`` (reached for the
    n-th time when it says ``point:n``). ``points`` are names of the same place, generic first."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, nth = _target(spec)
    if target not in points:
        return
    _reached[target] = _reached.get(target, 0) + 1
    if _reached[target] == nth:
        os.kill(os.getpid(), signal.SIGKILL)
