"""Our static model against transformers' own BERT: same weights, same outputs, how much slower?

A plain-BERT architecture (all BERT blocks, one FFN width and head count, plain embedding) *is* a
BERT, so ElmModel and BertModel can hold identical weights (``to_bert`` copies them) and must give
identical outputs; what is left to differ is the code around the matrix products. Measured: one
forward+backward (train mode, gradients set to None before each) and one inference forward (eval
mode, ``inference_mode``), without padding and with every other sequence a quarter padded, the
two models called alternately; the figure is the median of the
per-repeat paired ratios ElmModel / BertModel. Target: at most 1.05x. ``--profile`` adds the
top operators of one training step of each model (torch.profiler) to the Markdown summary.

    python benchmarks/bench_static_vs_bert.py [--thread-counts 1 2] [--batch 16 --seq 64 --repeats 30]
"""

from __future__ import annotations

import itertools

import _common
import torch
from torch.profiler import ProfilerActivity, profile

from elm_space import Architecture, Backbone, BlockKind, LayerChoice
from elm_train.models import ElmModel, elm_config, to_bert

NAME = "static_vs_bert"
TARGET = 1.05
SHAPES = {
    "bert-h256-l4-v30522": {"hidden": 256, "layers": 4, "heads": 4, "ffn": 1024, "vocab": 30522},
    "bert-h128-l2-v8000": {"hidden": 128, "layers": 2, "heads": 2, "ffn": 512, "vocab": 8000},
}


def plain_bert(hidden: int, layers: int, heads: int, ffn: int, vocab: int) -> Architecture:
    backbone = Backbone(hidden_size=hidden, vocab_size=vocab, max_positions=512, type_vocab_size=2)
    block = LayerChoice(candidate=0, kind=BlockKind.BERT, ffn_width=ffn, heads=heads)
    return Architecture(backbone=backbone, layers=(block,) * layers)


def padding_mask(ids: torch.Tensor, padded: bool) -> torch.Tensor:
    """All ones, or every other sequence with its last quarter padded (a batch of mixed lengths)."""
    mask = torch.ones_like(ids)
    if padded:
        mask[::2, -ids.shape[1] // 4 :] = 0
    return mask


def models(arch: Architecture, ids: torch.Tensor) -> tuple[ElmModel, torch.nn.Module, float]:
    """ElmModel, the BertModel with its weights, and the largest difference of their outputs at
    real tokens (eval mode, with and without padding)."""
    torch.manual_seed(0)
    elm = ElmModel(elm_config(arch)).eval()
    bert = to_bert(elm).eval()
    max_diff = 0.0
    with torch.inference_mode():
        for mask in (padding_mask(ids, False), padding_mask(ids, True)):
            a = elm(ids, attention_mask=mask).last_hidden_state
            b = bert(ids, attention_mask=mask).last_hidden_state
            max_diff = max(max_diff, float((a - b)[mask.bool()].abs().max()))
    if max_diff > 1e-5:
        raise AssertionError(f"ElmModel and BertModel differ by {max_diff:.3g} > 1e-5 on the same weights")
    return elm, bert, max_diff


def train_step(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor):
    params = list(model.parameters())

    def step() -> None:
        for p in params:
            p.grad = None
        model(ids, attention_mask=mask).last_hidden_state.pow(2).mean().backward()

    return step


def infer(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor):
    def forward() -> None:
        with torch.inference_mode():
            model(ids, attention_mask=mask)

    return forward


def top_ops(step, rows: int = 12) -> str:
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def measure(name: str, shape: dict[str, int], args) -> tuple[list[dict], str]:
    arch = plain_bert(**shape)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, shape["vocab"], (args.batch, args.seq), generator=gen)
    elm, bert, max_diff = models(arch, ids)
    rows, profiles = [], ""
    for mode, padded in itertools.product(("train", "inference"), (False, True)):
        mask = padding_mask(ids, padded)
        elm.train(mode == "train")
        bert.train(mode == "train")
        make = train_step if mode == "train" else infer
        fns = {"elm": make(elm, ids, mask), "bert": make(bert, ids, mask)}
        times = _common.paired_times(fns, args.warmup, args.repeats)
        row = {
            "shape": name,
            "mode": mode,
            "padding": padded,
            "threads": torch.get_num_threads(),
            **_common.compare(times, "elm", "bert"),
        }
        row["within_target"] = row["ratio"] <= TARGET
        rows.append({**row, "params": sum(p.numel() for p in elm.parameters()), "max_abs_diff": max_diff})
        print(
            f"{name:22s} {mode:9s} pad {padded:d} threads {row['threads']}  elm {row['elm_ms']:8.2f} ms  "
            f"bert {row['bert_ms']:8.2f} ms  ratio {row['ratio']:.3f}"
        )
        if args.profile and mode == "train" and not padded:
            for label, fn in fns.items():
                profiles += f"\n### {name}, {label}, train step, {row['threads']} threads\n\n```\n{top_ops(fn)}\n```\n"
    return rows, profiles


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME)
    p.add_argument(
        "--thread-counts", type=int, nargs="+", default=None, help="measure with each (default --threads)"
    )
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="add torch.profiler tables of a train step")
    args = p.parse_args()
    if args.smoke:
        args.repeats, args.warmup = 3, 1
    info = _common.machine(args.threads)
    rows, profiles = [], ""
    for threads in args.thread_counts or [args.threads]:
        torch.set_num_threads(threads)
        for name, shape in SHAPES.items():
            got, prof = measure(name, shape, args)
            rows += got
            profiles += prof
    result = {
        **_common.provenance(NAME, args, info),
        "batch": args.batch,
        "seq_len": args.seq,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "statistic": "median ms per call; ratio = median of paired per-repeat ratios ElmModel / BertModel",
        "target_ratio": TARGET,
        "results": rows,
    }
    columns = [
        "shape",
        "mode",
        "padding",
        "threads",
        "params",
        "elm_ms",
        "bert_ms",
        "ratio",
        "ratio_of_medians",
        "within_target",
    ]
    summary = (
        f"ElmModel vs transformers BertModel with identical weights (outputs equal to 1e-5), batch "
        f"{args.batch} x {args.seq} tokens, {args.repeats} paired repeats after {args.warmup} warm-up. "
        f"Target ratio <= {TARGET}.\n\n" + _common.table(rows, columns) + "\n" + profiles
    )
    _common.write(_common.output_path(args, NAME), result, summary)


if __name__ == "__main__":
    main()
