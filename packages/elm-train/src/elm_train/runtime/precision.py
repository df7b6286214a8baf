"""Whether this machine can train at a precision, asked of DeepSpeed's accelerator.

DeepSpeed refuses fp16 (or bf16) deep inside ``deepspeed.initialize`` with a bare ValueError,
after the data and teacher stages have run. Whether a precision works is a fact of the machine,
not of the config: on CPU, fp16 needs oneDNN's fp16 kernels (recent Intel Xeons have them, AMD
EPYCs do not), so the same config runs on one machine of a kind and not on the next. Runs ask
here before any stage starts, and tests ask here before they train at a precision.
"""

from __future__ import annotations

from typing import Any, Literal

from elm_train.runtime.errors import ElmTrainError

Precision = Literal["fp32", "bf16", "fp16"]


class PrecisionError(ElmTrainError):
    """A training precision this machine's accelerator cannot run, naming the setting."""


def accelerator() -> Any:
    """DeepSpeed's accelerator (imported late: the command's config checks load no torch)."""
    from deepspeed.accelerator import get_accelerator

    return get_accelerator()


def unsupported_reason(precision: str) -> str | None:
    """Why ``precision`` cannot train here (one sentence), or None when it can.

    The answer is DeepSpeed's own (``is_fp16_supported`` / ``is_bf16_supported`` of the
    accelerator it selected), so it is exactly the check ``deepspeed.initialize`` will make.
    """
    if precision == "fp32":
        return None
    device = accelerator()
    ask = {"fp16": device.is_fp16_supported, "bf16": device.is_bf16_supported}.get(precision)
    if ask is None:
        return f"{precision!r} is not a training precision (fp32, bf16, fp16)"
    if ask():
        return None
    name = device.device_name()
    why = " (on CPU it needs oneDNN's fp16 kernels, e.g. AVX512-FP16 or AMX)" if name == "cpu" else ""
    return f"DeepSpeed's {name} accelerator does not support {precision} on this machine{why}"


def supported_precisions() -> list[str]:
    return [p for p in ("fp32", "bf16", "fp16") if unsupported_reason(p) is None]


def check_precision(precision: str, field: str = "deepspeed.precision") -> None:
    """Raise :class:`PrecisionError` naming ``field`` and the precisions that do work here."""
    reason = unsupported_reason(precision)
    if reason is not None:
        others = [p for p in supported_precisions() if p != precision]
        raise PrecisionError(f"{field}: {precision}: {reason}; use {' or '.join(others)} instead")
