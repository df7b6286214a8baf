"""Check the CUDA path of supernet training on one GPU, and time it.

For ZeRO stages 0 and 2 in bf16 this builds the config's full-size supernet (default
``elm-small``), takes a few single-path steps on random tokens through DeepSpeed's engine, and
reports:

- steps per second and peak GPU memory;
- whether candidates the sampled path did not use moved in a step. Training sets their gradients
  to None (``drop_unsampled_gradients``), which is enough for a torch optimizer under ZeRO-0 in
  fp32; DeepSpeed's bf16 optimizer keeps fp32 master weights and gradients of its own, so this
  script measures what actually happens there instead of assuming it.

Run it on a machine with a GPU (it exits with a message otherwise):

    python scripts/gpu_check.py --preset elm-small --steps 6 --out gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import elm_space
from elm_train.config import DeepSpeedConfig, OptimConfig
from elm_train.models import ElmSupernet
from elm_train.presets import preset
from elm_train.training.engine import build_engine
from elm_train.training.supernet_training import drop_unsampled_gradients


def snapshot(engine, supernet: ElmSupernet, arch: elm_space.Architecture) -> dict[str, torch.Tensor]:
    """Full fp32 copies of every unsampled candidate's weights (gathered under ZeRO)."""
    from deepspeed.utils import safe_get_full_fp32_param

    out = {}
    for i, layer in enumerate(supernet.layers):
        for j, block in enumerate(layer):
            if j == arch.layers[i].candidate:
                continue
            for name, p in block.named_parameters():
                full = safe_get_full_fp32_param(p)
                out[f"layers.{i}.{j}.{name}"] = (
                    (full if full is not None else p.detach()).float().cpu().clone()
                )
    return out


def check(preset_name: str, zero: int, steps: int, batch: int, seq: int) -> dict[str, object]:
    config = preset(preset_name)
    space = config.search_space()
    torch.manual_seed(0)
    supernet = ElmSupernet(space, config.model)
    ds = DeepSpeedConfig(zero_stage=zero, precision="bf16", micro_batch_size=batch)
    engine, _, _ = build_engine(supernet, ds, OptimConfig(lr=1e-4, epochs=1), total_steps=steps)
    model = engine.module
    torch.cuda.reset_peak_memory_stats()
    moved, times = [], []
    for step in range(steps):
        arch = elm_space.sample(space, step)
        before = snapshot(engine, model, arch)
        ids = torch.randint(space.backbone.vocab_size, (batch, seq), device=engine.device)
        torch.cuda.synchronize()
        start = time.perf_counter()
        loss = engine(ids, arch=arch, labels=ids, head="masked_lm").loss
        engine.backward(loss)
        drop_unsampled_gradients(model, arch)
        engine.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        after = snapshot(engine, model, arch)
        moved.append(max(float((after[k] - before[k]).abs().max()) for k in before))
    steady = times[1:] or times
    return {
        "preset": preset_name,
        "zero_stage": zero,
        "precision": "bf16",
        "batch": [batch, seq],
        "supernet_parameters": sum(p.numel() for p in supernet.parameters()),
        "steps_per_second": round(len(steady) / sum(steady), 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "unsampled_max_abs_change": moved,
        "unsampled_unchanged": all(m == 0.0 for m in moved),
        "final_loss": float(loss.detach()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="elm-small")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a machine with a GPU", file=sys.stderr)
        return 2
    results = [check(args.preset, zero, args.steps, args.batch, args.seq) for zero in (0, 2)]
    text = json.dumps(
        {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}, indent=2
    )
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
