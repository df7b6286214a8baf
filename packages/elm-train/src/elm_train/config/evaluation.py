"""The evaluate stage's section and the live monitor's: what is measured after training, and
where the curves go while it runs."""

from __future__ import annotations

import importlib.util

from pydantic import PositiveInt, field_validator

from elm_train.config.base import Section


class EvalStageConfig(Section):
    lm: bool = True
    lm_documents: PositiveInt | None = 1000
    """Documents of the held-out text scored for perplexity (``None``: all of them). The causal
    family scores the teacher too (it has an LM head) with the sliding-window protocol."""
    latency: bool = True
    latency_batch_size: PositiveInt = 1
    latency_seq_len: PositiveInt = 64
    latency_repeats: PositiveInt = 20
    onnx: bool | None = None
    """Export each student to ONNX fp32 and int8 (``evaluate/onnx/<student>``) and report eager
    PyTorch, ONNX Runtime fp32 and int8 latency (batch 1 and ``deepspeed.micro_batch_size``) and
    perplexity side by side. ``None``: when onnxruntime is installed (``elm-eval[onnx]``)."""

    @field_validator("onnx")
    @classmethod
    def _onnx_installed(cls, value: bool | None) -> bool | None:
        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if value and missing:
            raise ValueError(
                f"{' and '.join(missing)} not installed; pip install 'elm-eval[onnx]' (or set it to null)"
            )
        return value


class MonitorConfig(Section):
    """Live curves through DeepSpeed's own monitor (``deepspeed.monitor``): every training engine
    writes its learning rate, and the pipeline writes its series (loss, each KD term, the sampled
    path's size, growth, the search's fitness per generation, task dev scores) to the same
    writers, under ``RUN/monitor/<writer>/<stage>``; rank 0 writes. ``tensorboard --logdir
    RUN/monitor/tensorboard`` shows them live."""

    tensorboard: bool = False
    """TensorBoard event files (needs ``tensorboard``: ``pip install 'elm-train[monitor]'``)."""
    csv: bool = False
    """One CSV file per series (DeepSpeed's csv_monitor)."""
    wandb: bool = False
    """Weights & Biases, used only where ``wandb`` is installed and logged in (else a warning)."""
    wandb_project: str = "elm-train"

    @field_validator("tensorboard")
    @classmethod
    def _tensorboard_installed(cls, value: bool) -> bool:
        if value and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                "tensorboard is not installed; pip install 'elm-train[monitor]' (or tensorboard)"
            )
        return value

    @property
    def enabled(self) -> bool:
        return self.tensorboard or self.csv or self.wandb
