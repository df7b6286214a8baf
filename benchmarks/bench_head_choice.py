"""Why does the CKA head choice cut heads? The estimator's bias, measured on trained supernets.

The head-choice step (METHOD.md 2b) drops a head whose linear CKA with an earlier kept head is
above 0.9, with each *sequence* as one example and its flattened ``tokens x head_dim`` context as
the features: n = ``heads.batches x micro_batch`` = 64 examples of 2,048-8,192 features in the
demo. The usual (biased) CKA estimator is inflated when the features far outnumber the examples:
two *independent* Gaussian matrices of that shape score about 0.97. This script measures, on each
given run's trained supernet and for its found architecture and ``--randoms`` random paths:

- per layer, the mean off-diagonal head CKA with the biased estimator (the step's) and the
  debiased one (Song et al. 2012's unbiased HSIC, as Nguyen et al. 2021 use for CKA), and the
  heads each would keep at the 0.9 threshold;
- two nulls of the same shape, where the true similarity is 0: independent Gaussian features, and
  each head paired with another head's contexts of *other* sequences (a random permutation of the
  examples, which keeps every head's own structure);
- the static student's held-out distillation loss before any retraining, with the searched head
  counts and with the chosen ones (same weights, other split of Q/K/V into heads), and its
  parameters and latency (batch 1 x 64 tokens, one thread, timed in turns).

    python benchmarks/bench_head_choice.py --run-dirs benchmarks/runs/ablation-... [--randoms 4]
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

import _common
import torch
import yaml

import elm_space
import elm_train
from elm_distill import head_cka_matrix, per_head_features, redundant_heads
from elm_space import Architecture
from elm_train import RunConfig
from elm_train.pipeline import Run, stages
from elm_train.search.head_choice import heads_after_pruning

NAME = "head_choice"
THRESHOLD = 0.9


def contexts(run: Run, arch: Architecture) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per layer ``[heads, n, tokens x head_dim]`` features of the head-choice batches, and the masks."""
    cfg = run.config
    model = stages.supernet.trained_supernet(run).model
    val = elm_train.eval_batches(run.blocks["validation"], cfg.deepspeed.micro_batch_size, cfg.heads.batches)
    per_layer: list[list[torch.Tensor]] = [[] for _ in arch.layers]
    masks = []
    with torch.no_grad():
        for batch in val:
            out = model.supernet(
                batch["input_ids"],
                arch=arch,
                attention_mask=batch["attention_mask"],
                output_attention_contexts=True,
            )
            masks.append(batch["attention_mask"])
            for layer, ctx in enumerate(out.attention_contexts):
                size, heads, tokens, dim = ctx.shape
                per_layer[layer].append(ctx.transpose(1, 2).reshape(size, tokens, heads * dim))
    mask = torch.cat(masks)
    feats = [
        per_head_features(torch.cat(c), choice.heads, mask)
        for c, choice in zip(per_layer, arch.layers, strict=True)
    ]
    return feats, mask


def off_diagonal_mean(cka: torch.Tensor) -> float:
    h = cka.shape[0]
    return float(cka[~torch.eye(h, dtype=torch.bool)].mean()) if h > 1 else float("nan")


def layer_report(features: torch.Tensor, width: int, seed: int) -> dict[str, Any]:
    heads = features.shape[0]
    gen = torch.Generator().manual_seed(seed)
    biased, debiased = head_cka_matrix(features), head_cka_matrix(features, debiased=True)
    gaussian = torch.randn(features.shape, generator=gen, dtype=torch.float64)
    perm = torch.randperm(features.shape[1], generator=gen)
    # each head against the next head's contexts of other sequences: no real correspondence
    shuffled_biased = [
        float(head_cka_matrix(torch.stack([features[i], features[(i + 1) % heads][perm]]))[0, 1])
        for i in range(heads)
    ]
    shuffled_debiased = [
        float(
            head_cka_matrix(torch.stack([features[i], features[(i + 1) % heads][perm]]), debiased=True)[0, 1]
        )
        for i in range(heads)
    ]
    return {
        "heads": heads,
        "examples": features.shape[1],
        "features": features.shape[2],
        "cka_biased_mean": off_diagonal_mean(biased),
        "cka_debiased_mean": off_diagonal_mean(debiased),
        "kept_biased": heads_after_pruning(heads, len(redundant_heads(biased, THRESHOLD)), width),
        "kept_debiased": heads_after_pruning(heads, len(redundant_heads(debiased, THRESHOLD)), width),
        "null_gaussian_biased": off_diagonal_mean(head_cka_matrix(gaussian)),
        "null_gaussian_debiased": off_diagonal_mean(head_cka_matrix(gaussian, debiased=True)),
        "null_shuffled_biased": statistics.fmean(shuffled_biased),
        "null_shuffled_debiased": statistics.fmean(shuffled_debiased),
    }


def start_loss_and_latency(run: Run, arch: Architecture, chosen: Architecture) -> dict[str, Any]:
    """Held-out distillation loss of the extracted student before retraining, and latency, with
    the searched heads and with the chosen ones (identical weights)."""
    cfg, teacher = run.config, run.teacher_features
    out: dict[str, Any] = {}
    students = {}
    for label, a in (("searched", arch), ("chosen", chosen)):
        student, objective = elm_train.build_student(
            stages.supernet.trained_supernet(run).model,
            a,
            "supernet",
            cfg.retrain.kd,
            teacher.width,
            teacher.config_layers,
            cfg.seed,
        )
        kd = elm_train.StudentKD(student, objective, cfg.retrain.lm_weight)
        out[f"kd_loss_before_retraining_{label}"] = _common.heldout_kd_loss(kd, run, teacher)
        out[f"params_{label}"] = elm_space.count_params(a)
        students[label] = student.eval()
    ids = torch.randint(5, 1000, (1, cfg.eval.latency_seq_len), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)

    def call(model: torch.nn.Module):
        return lambda: model(input_ids=ids, attention_mask=mask)

    with torch.inference_mode():
        times = _common.paired_times({k: call(m) for k, m in students.items()}, warmup=10, repeats=60)
    out["latency"] = _common.compare(times, "chosen", "searched")
    return out


def probe(run_dir: Path, randoms: int) -> dict[str, Any]:
    config = RunConfig.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
    run = Run(config, run_dir)
    space = stages.supernet.grown_space(run)
    found = stages.search.found_architecture(run)
    rng = random.Random(f"head-choice:{config.seed}")
    archs = {"found": found}
    for i in range(randoms):  # random paths with the most heads the space offers per layer
        layers = []
        for layer in range(len(space.layers)):
            options = space.options(layer)
            most = max(c.heads for c in options)
            layers.append(rng.choice([c for c in options if c.heads == most]))
        archs[f"random{i}"] = Architecture(backbone=found.backbone, layers=tuple(layers))
    rows = []
    for name, arch in archs.items():
        feats, _ = contexts(run, arch)
        layers = [
            layer_report(f, choice.attention_width(arch.backbone.hidden_size), seed=i)
            for i, (f, choice) in enumerate(zip(feats, arch.layers, strict=True))
        ]
        chosen = arch.with_heads([r["kept_biased"] for r in layers])
        row = {"model": name, "architecture": arch.to_string(), "chosen_biased": chosen.to_string()}
        row["chosen_debiased"] = arch.with_heads([r["kept_debiased"] for r in layers]).to_string()
        row["layers"] = layers
        if name == "found":
            row.update(start_loss_and_latency(run, arch, chosen))
        rows.append(row)
    return {"run_dir": str(run_dir), "seed": config.seed, "models": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "Per layer of each architecture: mean off-diagonal head CKA on the head-choice batches, with the biased "
        "estimator (the step's) and the debiased one, the heads each keeps at 0.9, and two nulls of the same "
        "shape whose true CKA is 0 (independent Gaussian features; each head against another head's contexts "
        "of other sequences).",
        "",
        "| seed | model | layer | heads | n x features | CKA biased | CKA debiased | kept biased | kept debiased "
        "| null Gaussian biased / debiased | null shuffled biased / debiased |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        for m in r["models"]:
            for i, layer in enumerate(m["layers"]):
                lines.append(
                    f"| {r['seed']} | {m['model']} | {i} | {layer['heads']} | {layer['examples']} x {layer['features']} "
                    f"| {layer['cka_biased_mean']:.3f} | {layer['cka_debiased_mean']:.3f} | {layer['kept_biased']} "
                    f"| {layer['kept_debiased']} | {layer['null_gaussian_biased']:.3f} / {layer['null_gaussian_debiased']:.3f} "
                    f"| {layer['null_shuffled_biased']:.3f} / {layer['null_shuffled_debiased']:.3f} |"
                )
    lines += [
        "",
        "Found architectures: searched vs chosen heads (biased CKA, the step as it was), same weights:",
        "",
        "| seed | searched | chosen (biased) | chosen (debiased) | params searched / chosen | held-out KD loss before "
        "retraining, searched / chosen | latency ms searched / chosen (ratio) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        m = r["models"][0]
        lat = m["latency"]
        lines.append(
            f"| {r['seed']} | `{m['architecture']}` | `{m['chosen_biased']}` | `{m['chosen_debiased']}` "
            f"| {m['params_searched']:,} / {m['params_chosen']:,} "
            f"| {m['kd_loss_before_retraining_searched']:.4f} / {m['kd_loss_before_retraining_chosen']:.4f} "
            f"| {lat['searched_ms']} / {lat['chosen_ms']} ({lat['ratio']}) |"
        )
    return "\n".join(lines).replace("|`", "| `")


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME, threads=1)
    p.add_argument(
        "--run-dirs", type=Path, nargs="+", required=True, help="finished run directories (to heads)"
    )
    p.add_argument(
        "--randoms", type=int, default=4, help="random paths per run, with the most heads per layer"
    )
    args = p.parse_args()
    info = _common.machine(args.threads)
    runs = [probe(d, args.randoms) for d in args.run_dirs]
    result = {**_common.provenance(NAME, args, info), "seeds": [r["seed"] for r in runs], "runs": runs}
    _common.write(_common.output_path(args, NAME), result, markdown(result))


if __name__ == "__main__":
    main()
