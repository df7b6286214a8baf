"""Atomic, resumable checkpoints.

A checkpoint is a directory written under a temporary name and renamed into place; only then is
the ``latest`` pointer replaced (itself by an atomic rename). A crash at any moment leaves either
the previous checkpoint or the new one as ``latest``, never a half-written one. Weights go to
safetensors; optimizer and scheduler state go through DeepSpeed's own checkpoint (it knows how
ZeRO partitions them); the loop's position, RNG states and extra state go to ``state.json``.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from elm_train import engine as dist

LATEST = "latest"
DS_TAG = "deepspeed"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    py = random.getstate()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))


def save(root: Path, step: int, engine: Any, state: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoint ``step-<n>`` under ``root`` and make it ``latest``; all ranks must call."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    final = root / name
    tmp = root / f".tmp-{name}"
    if dist.rank() == 0 and tmp.exists():
        shutil.rmtree(tmp)
    dist.barrier()
    engine.save_checkpoint(str(tmp), tag=DS_TAG)
    if dist.rank() == 0:
        module = engine.module
        tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
        save_file(_untie(tensors), str(tmp / "model.safetensors"))
        write_json_atomic(tmp / "state.json", {**state, "step": step, "rng": rng_state()})
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        write_json_atomic(root / LATEST, {"checkpoint": name})
        for old in sorted(p for p in root.glob("step-*") if p.name != name)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def _untie(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage; tied weights are written once per name as copies."""
    seen: dict[int, str] = {}
    out = {}
    for key, value in tensors.items():
        ptr = value.data_ptr()
        out[key] = value.clone() if ptr in seen else value
        seen.setdefault(ptr, key)
    return out


def latest(root: Path) -> Path | None:
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / json.loads(pointer.read_text())["checkpoint"]
    return path if path.is_dir() else None


def load(path: Path, engine: Any) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from ``path``; returns the saved state."""
    engine.load_checkpoint(str(path), tag=DS_TAG, load_module_strict=True)
    weights = load_file(str(path / "model.safetensors"))
    engine.module.load_state_dict(weights, strict=True)
    state = json.loads((path / "state.json").read_text())
    set_rng_state(state["rng"])
    return state
