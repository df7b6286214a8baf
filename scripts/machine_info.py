"""Print what this machine is, as far as the test suite cares: CPU model, cores, the instruction
sets reduced precision depends on, and DeepSpeed's own answer on fp16 and bf16.

CI runs it first, so a log says which machine it ran on: the same commit can skip fp16 tests on
one CPU of a kind and run them on the next (``packages/elm-train/tests/conftest.py``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")
"""CPU flags that decide which oneDNN kernels torch can use for bf16 and fp16."""


def cpu() -> tuple[str, set[str]]:
    """The model name and flags from /proc/cpuinfo (Linux); the platform's words elsewhere."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return platform.processor() or platform.machine(), set()
    model, flags = platform.machine(), set()
    for line in info.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == platform.machine():
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def main() -> None:
    model, flags = cpu()
    print(f"machine: {model}; {os.cpu_count()} cores; {platform.machine()}")
    print(f"cpu flags: {' '.join(f for f in FLAGS if f in flags) or 'none of ' + ', '.join(FLAGS)}")
    import torch

    from elm_train.runtime.precision import accelerator, unsupported_reason

    print(f"torch {torch.__version__}; DeepSpeed accelerator: {accelerator().device_name()}")
    for precision in ("bf16", "fp16"):
        reason = unsupported_reason(precision)
        print(f"{precision}: {'supported' if reason is None else 'not supported: ' + reason}")


if __name__ == "__main__":
    main()
