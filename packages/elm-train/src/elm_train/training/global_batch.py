"""The global batch: examples per optimizer step over all processes, the same on any process count.

Every training stage (supernet, retraining, the stand-in teacher, multi-task fine-tuning, task
fine-tuning) takes its global batch from the config: ``multitask.batch_size`` or a task's
``batch_size`` where set, else ``deepspeed.global_batch_size``, else ``deepspeed.micro_batch_size x
deepspeed.gradient_accumulation_steps`` (what one process takes, so a config written for one process
means the same on eight). Each process then takes ``global / processes`` examples a step, in
micro-batches of at most ``deepspeed.micro_batch_size`` (the largest size that divides its share),
accumulated. A run on 1, 2, 4 or 8 processes therefore takes the same optimizer steps per epoch, on
the same examples per step, with the same learning-rate schedule; only how many examples one
process holds at once changes.

A global batch that does not split evenly over the processes is refused, naming the numbers, when
the run starts (:func:`check_run`), before anything trains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from elm_train.config import ConfigError, DeepSpeedConfig

if TYPE_CHECKING:
    from elm_train.config import RunConfig


class GlobalBatchError(ConfigError):
    """A global batch that does not split evenly over the processes."""


def split_batch(
    ds: DeepSpeedConfig,
    world_size: int,
    global_batch: int | None = None,
    field: str = "deepspeed.global_batch_size",
) -> DeepSpeedConfig:
    """``ds`` for one process of ``world_size``: ``global_batch`` (``None``: ``ds.global_batch``)
    examples a step over all processes, each process's share in micro-batches of at most
    ``ds.micro_batch_size``, accumulated. The result states the global batch it was split from, so
    splitting it again for the same process count returns it unchanged. ``field`` names the
    setting the global batch came from, for the error when it does not split."""
    total = ds.global_batch if global_batch is None else global_batch
    if total % world_size:
        raise GlobalBatchError(
            f"{field}={total} examples a step do not split evenly over {world_size} processes "
            f"({total} / {world_size} = {total / world_size:g}); choose a multiple of the process count "
            "(the paper presets' 256 splits over 1, 2, 4 or 8 processes)"
        )
    share = total // world_size
    micro = max(d for d in range(1, min(share, ds.micro_batch_size) + 1) if share % d == 0)
    return ds.model_copy(
        update={
            "micro_batch_size": micro,
            "gradient_accumulation_steps": share // micro,
            "global_batch_size": total,
        }
    )


def stage_batches(config: RunConfig) -> dict[str, int]:
    """The global batch of every training stage this config runs, by the field it comes from."""
    ds = config.deepspeed
    source = "deepspeed.global_batch_size"
    if ds.global_batch_size is None:
        source += " (unset: micro_batch_size x gradient_accumulation_steps)"
    out = {source: ds.global_batch}
    if config.multitask.enabled and config.multitask.batch_size is not None:
        out["multitask.batch_size"] = config.multitask.batch_size
    if config.tasks.batch_size is not None and config.task_names:
        out["tasks.batch_size"] = config.tasks.batch_size
    for task in config.task_names:
        override = config.tasks.for_task(task).batch_size
        if override is not None and override != config.tasks.batch_size:
            out[f"tasks.per_task.{task}.batch_size"] = override
    return out


def check_run(config: RunConfig, world_size: int) -> None:
    """Every training stage's global batch splits over ``world_size`` processes, or
    :class:`GlobalBatchError` naming the field and the numbers (called when a run starts)."""
    for field, total in stage_batches(config).items():
        split_batch(config.deepspeed, world_size, total, field)
