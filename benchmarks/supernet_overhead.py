"""Forward+backward step time of the supernet on a path vs the extracted static model.

The supernet runs the same block code on slices of its max-width weights, so any gap is the
cost of slicing, of gradients landing in max-width tensors, and of checking the architecture.
Three paths per space (smallest, mixed, largest; the demo space and the paper's elm-small), head "none" with a hidden-state loss
(the supernet stage distils hidden states). Supernet and static steps alternate (and swap
order every repeat) so that drift in machine load hits both alike; the figures are the medians
over repeats after warm-up, and the ratio is the median of the per-repeat paired ratios, which
is far steadier than a ratio of medians on a shared machine.

    python benchmarks/supernet_overhead.py [--spaces demo elm-small --batch 16 --seq 64 --repeats 20]
"""

from __future__ import annotations

import statistics
import time

import _common
import torch

import elm_space
from elm_space import BlockKind, SearchSpace
from elm_train.models import ElmSupernet

NAME = "supernet_overhead"
TARGET = 1.15


def _architectures(space: SearchSpace) -> dict[str, elm_space.Architecture]:
    def pick(layer: int, kind: BlockKind, widest: bool) -> elm_space.LayerChoice:
        options = [
            o for o in space.options(layer) if o.kind is kind and o.heads == max(space.layers[layer][0].heads)
        ]
        return max(options, key=lambda o: o.ffn_width) if widest else min(options, key=lambda o: o.ffn_width)

    n = space.num_layers
    return {
        "small": space.architecture([pick(i, BlockKind.MOBILE, False) for i in range(n)]),
        "medium": space.architecture(
            [pick(i, BlockKind.MOBILE if i % 2 else BlockKind.BERT, i % 2 == 0) for i in range(n)]
        ),
        "large": space.architecture([pick(i, BlockKind.BERT, True) for i in range(n)]),
    }


def _step(run, params) -> float:
    for p in params:
        p.grad = None
    start = time.perf_counter()
    run().last_hidden_state.pow(2).mean().backward()
    return time.perf_counter() - start


def measure(space: SearchSpace, batch: int, seq: int, repeats: int, warmup: int) -> list[dict]:
    torch.manual_seed(0)
    supernet = ElmSupernet(space).train()
    ids = torch.randint(1, space.backbone.vocab_size, (batch, seq))
    mask = torch.ones_like(ids)
    rows = []
    for name, arch in _architectures(space).items():
        static = supernet.extract(arch).train()
        sup_params, static_params = list(supernet.parameters()), list(static.parameters())

        def run_supernet(arch=arch):
            return supernet(ids, arch=arch, attention_mask=mask)

        def run_static(static=static):
            return static(ids, attention_mask=mask)

        times: dict[str, list[float]] = {"supernet": [], "static": []}
        for i in range(warmup + repeats):
            if i % 2:
                t_static, t_sup = _step(run_static, static_params), _step(run_supernet, sup_params)
            else:
                t_sup, t_static = _step(run_supernet, sup_params), _step(run_static, static_params)
            if i >= warmup:
                times["supernet"].append(t_sup)
                times["static"].append(t_static)
        sup, stat = statistics.median(times["supernet"]), statistics.median(times["static"])
        ratio = statistics.median(a / b for a, b in zip(times["supernet"], times["static"], strict=True))
        rows.append(
            {
                "architecture": name,
                "path": arch.to_string(),
                "params": elm_space.count_params(arch),
                "encoder_params": elm_space.count_params(arch) - elm_space.embedding_params(arch.backbone),
                "supernet_ms": round(sup * 1000, 2),
                "static_ms": round(stat * 1000, 2),
                "ratio": round(ratio, 3),
                "ratio_of_medians": round(sup / stat, 3),
                "within_target": ratio <= TARGET,
            }
        )
        print(
            f"{name:7s} {rows[-1]['params']:>10,d} params  supernet {sup * 1000:8.1f} ms  static {stat * 1000:8.1f} ms  ratio {ratio:.3f}"
        )
    return rows


def main() -> None:
    parser = _common.parser(__doc__.splitlines()[0], NAME)
    parser.add_argument("--spaces", nargs="+", default=["demo", "elm-small"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if args.smoke:
        args.spaces, args.repeats, args.warmup = ["demo"], 3, 1
    info = _common.machine(args.threads)
    rows = []
    for name in args.spaces:
        print(f"space {name}")
        rows += [
            {"space": name, **row}
            for row in measure(elm_space.preset(name), args.batch, args.seq, args.repeats, args.warmup)
        ]
    result = {
        **_common.provenance(NAME, args, info),
        "batch": args.batch,
        "seq_len": args.seq,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "threads": args.threads,
        "statistic": "median ms of one forward+backward (grads set to None before each); ratio = median paired ratio",
        "target_ratio": TARGET,
        "results": rows,
    }
    columns = [
        "space",
        "architecture",
        "params",
        "supernet_ms",
        "static_ms",
        "ratio",
        "ratio_of_medians",
        "within_target",
    ]
    summary = (
        f"Forward+backward of the supernet on a path vs the extracted static model, batch {args.batch} x "
        f"{args.seq}, {args.repeats} paired repeats after {args.warmup} warm-up. Target ratio <= {TARGET}.\n\n"
        + _common.table(rows, columns)
    )
    _common.write(_common.output_path(args, NAME), result, summary)


if __name__ == "__main__":
    main()
