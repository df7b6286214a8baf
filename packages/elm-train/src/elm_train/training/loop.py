"""The training loop every stage shares: DeepSpeed steps, checkpoints, resume, metrics, progress.

A stage subclasses :class:`TrainLoop` and says what one micro-batch's loss is; the loop does the
rest. The loop is written to be read top to bottom (in the spirit of nanoGPT's): resume, then for
each step sample the micro-batches, back-propagate through the engine, step, log, checkpoint.

A non-finite loss (NaN or inf, on any rank) stops the stage with :class:`NonFiniteLossError`
before it is back-propagated, so nothing it touched is ever checkpointed; resuming starts again
from the last checkpoint.
"""

from __future__ import annotations

import math
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from tqdm.auto import tqdm

from elm_train.config import DeepSpeedConfig, OptimConfig
from elm_train.runtime import checkpoint
from elm_train.runtime import distributed as dist
from elm_train.runtime.errors import ElmTrainError
from elm_train.runtime.metrics import MetricsSink, NullMetrics
from elm_train.runtime.monitor import LOSS_TAG, engine_write, step_events
from elm_train.training import batches
from elm_train.training.engine import build_engine, full_precision_weights
from elm_train.training.global_batch import split_batch

CRASH_ENV = "ELM_TRAIN_CRASH_AFTER_STEP"
"""Fault injection for resume tests: the process SIGKILLs itself after finishing this step."""
CRASH_RANK_ENV = "ELM_TRAIN_CRASH_RANK"
"""With several processes, only this rank kills itself (the launcher then stops the others)."""


class NonFiniteLossError(ElmTrainError):
    """Training produced a NaN or infinite loss; the message names the stage, step and loss terms."""

    def __init__(
        self,
        stage: str,
        step: int,
        micro: int,
        loss: float,
        terms: dict[str, Any],
        ranks: list[int] | None = None,
        last_checkpoint: str | None = None,
    ) -> None:
        self.stage, self.step, self.micro, self.loss, self.terms = stage, step, micro, loss, terms
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in {"loss": loss, **terms}.items())
        where = f" on rank(s) {', '.join(map(str, ranks))}" if ranks and ranks != [0] else ""
        resume = (
            f"the last checkpoint, {last_checkpoint}, is intact"
            if last_checkpoint
            else "no checkpoint was written"
        )
        super().__init__(
            f"{stage}: non-finite loss at step {step} (micro-batch {micro}){where}: {shown}. "
            f"Training stopped before this loss was back-propagated; {resume}. Lower the learning rate "
            "or enable gradient clipping (deepspeed.gradient_clipping), check the data, then resume."
        )


def _fmt(value: Any) -> str:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = float(value.detach())
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class LoopSettings:
    """What every training loop takes besides its model, data and optimizer settings: one object,
    so that the loops' constructors name only what is their own."""

    deepspeed: DeepSpeedConfig
    seed: int
    out_dir: Path
    """Where the loop keeps its checkpoints (``checkpoints/step-N``)."""
    metrics: MetricsSink = field(default_factory=NullMetrics)
    checkpoint_every: int = 50
    """Optimizer steps between checkpoints."""
    pad_id: int = 0
    keep_checkpoints: int = 2


class TrainLoop:
    stage: str = "train"

    def __init__(
        self, module: torch.nn.Module, data: datasets.Dataset, optim: OptimConfig, loop: LoopSettings
    ) -> None:
        self.data = data
        self.pad_id = loop.pad_id
        dist.init_distributed()  # the process count splits the global batch
        self.ds = split_batch(
            loop.deepspeed, dist.world_size()
        )  # this process's micro-batch and accumulation
        self.seed = loop.seed
        self.out_dir = loop.out_dir
        self.metrics = loop.metrics
        self.checkpoint_every = loop.checkpoint_every
        self.keep_checkpoints = loop.keep_checkpoints
        self.last_checkpoint: str | None = None
        self.per_epoch = self.steps_in_epoch(self.ds.global_batch, optim.max_steps_per_epoch)
        self.total_steps = self.per_epoch * optim.epochs
        self.monitor = getattr(loop.metrics, "monitor", None)  # live curves, when the sink has a monitor
        blocks = self.monitor.blocks(self.stage) if self.monitor is not None else None
        self.engine, self.optimizer, self.scheduler = build_engine(
            module, self.ds, optim, self.total_steps, monitor=blocks
        )
        self.history: list[tuple[int, float]] = []

    # --- what a stage defines -------------------------------------------------------------
    def steps_in_epoch(self, global_batch: int, cap: int | None) -> int:
        """Optimizer steps per epoch (called once, before the engine is built)."""
        return batches.steps_per_epoch(len(self.data), global_batch, cap)

    def micro_batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        """This rank's micro-batch ``micro`` of optimizer step ``step`` (on the CPU)."""
        return batches.train_batch(
            self.data,
            self.seed,
            step,
            self.per_epoch,
            self.ds.micro_batch_size,
            self.ds.gradient_accumulation_steps,
            micro,
            self.pad_id,
        )

    def begin_step(self, step: int) -> None:
        """Choose what this optimizer step trains (e.g. the supernet path)."""

    def micro_loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def before_optimizer_step(self, step: int) -> None:
        """Last look at the gradients before the optimizer uses them."""

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # --- the loop ---------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def resume(self) -> int:
        """Load the newest valid checkpoint if there is one; returns the first step still to run.

        Checkpoints that fail verification are skipped (with a warning, and an event in the
        metrics); if checkpoints exist and none is valid, :class:`checkpoint.CheckpointError`.
        """
        restored = checkpoint.restore(self.ckpt_dir, self.engine)
        if restored is None:
            return 0
        for name, why in restored.skipped:
            self.metrics.log(self.stage, event="checkpoint_skipped", checkpoint=name, reason=why)
        state = restored.state
        saved_threads = state.get("threads")
        if saved_threads and saved_threads != torch.get_num_threads():
            # float sums depend on the thread count: resume with the one the run trained with
            torch.set_num_threads(saved_threads)
            self.metrics.log(self.stage, event="threads_restored", threads=saved_threads)
        saved_world = state.get("world_size", 1)
        if saved_world != dist.world_size():
            raise checkpoint.CheckpointError(
                f"{restored.path}: written by a run on {saved_world} process(es), resumed on "
                f"{dist.world_size()}; the data order and per-rank randomness depend on the count, so "
                f"resume it with {saved_world} (e.g. torchrun --nproc_per_node {saved_world})"
            )
        self.history = [tuple(p) for p in state.get("history", [])]
        self.load_extra_state(state.get("extra", {}))
        self.last_checkpoint = restored.path.name
        self.metrics.log(self.stage, event="resumed", step=state["step"], checkpoint=restored.path.name)
        return int(state["step"]) + 1

    def save(self, step: int) -> None:
        state = {
            "history": self.history,
            "extra": self.extra_state(),
            "stage": self.stage,
            "world_size": dist.world_size(),
            "threads": torch.get_num_threads(),
        }
        path = checkpoint.save(self.ckpt_dir, step, self.engine, state, keep=self.keep_checkpoints)
        self.last_checkpoint = path.name

    def check_finite(self, loss: torch.Tensor, logs: dict[str, Any], step: int, micro: int) -> float:
        """The loss as a float; :class:`NonFiniteLossError` on every rank if any rank's is NaN/inf."""
        value = float(loss.detach())
        bad = dist.ranks_where(not math.isfinite(value))
        if bad:
            raise NonFiniteLossError(
                self.stage, step, micro, value, dict(logs), bad, last_checkpoint=self.last_checkpoint
            )
        return value

    def train(self) -> list[tuple[int, float]]:
        start = self.resume()
        crash_after = int(os.environ.get(CRASH_ENV, "-1"))
        accumulation = self.ds.gradient_accumulation_steps
        bar = tqdm(
            range(start, self.total_steps),
            desc=self.stage,
            initial=start,
            total=self.total_steps,
            disable=dist.rank() != 0,
        )
        self.engine.train()
        for step in bar:
            batches.seed_torch(self.seed, self.stage, step, dist.rank())
            self.begin_step(step)
            loss_sum, logs, rows = 0.0, {}, 0
            for micro in range(accumulation):
                batch = self.micro_batch(step, micro)
                rows += len(batch["input_ids"])
                batch = {k: v.to(self.engine.device) for k, v in batch.items()}  # no copy on CPU
                loss, logs = self.micro_loss(batch, step)
                value = self.check_finite(loss, logs, step, micro)
                self.engine.backward(loss)
                if micro == accumulation - 1:
                    self.before_optimizer_step(step)
                self.engine.step()
                loss_sum += value / accumulation
            numbers = {k: v for k, v in logs.items() if isinstance(v, float)}
            averaged = dist.mean_over_ranks({**numbers, "loss": loss_sum, "examples": float(rows)})
            loss_sum = averaged.pop("loss")  # what all ranks trained on
            examples = round(averaged.pop("examples") * dist.world_size())  # the global batch
            logs = {**logs, **averaged, "examples": examples}
            self.history.append((step, loss_sum))
            lr = self.scheduler.get_last_lr()[0] if self.scheduler is not None else None
            self.metrics.log(self.stage, step=step, loss=loss_sum, lr=lr, **logs)
            engine_write(
                self.engine,
                [
                    (LOSS_TAG, loss_sum, self.engine.global_samples),
                    *step_events(self.stage, step, {"loss": loss_sum, **logs}),
                ],
            )
            bar.set_postfix(loss=f"{loss_sum:.4f}")
            epoch_done = (step + 1) % self.per_epoch == 0
            if epoch_done:
                info = self.end_epoch(step // self.per_epoch)
                if info:
                    self.metrics.log(self.stage, event="epoch_end", epoch=step // self.per_epoch, **info)
                    engine_write(self.engine, step_events(self.stage, step, info))
            if epoch_done or (step + 1) % self.checkpoint_every == 0 or step + 1 == self.total_steps:
                self.save(step)
            if step == crash_after and int(os.environ.get(CRASH_RANK_ENV, dist.rank())) == dist.rank():
                os.kill(os.getpid(), signal.SIGKILL)
        full_precision_weights(self.engine.module, self.optimizer)  # bf16/fp16 runs export fp32 weights
        return self.history
