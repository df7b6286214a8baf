"""Each layer's head count by CKA between its heads (METHOD.md section 2b).

Heads whose attention contexts are more similar than the threshold to an earlier kept head are
dropped (a set, so a head is never counted twice), and the count is lowered until it divides the
block's attention width. Only the split of the attention width changes, so the extracted weights
and the parameter count stay as they are.

A layer whose candidate offers several head counts had its count chosen by the search, on a
supernet that trained and ranked the path with that split; CKA leaves such a layer alone unless
asked (``keep``). In the reference every block has 12 heads and CKA is the only head choice (the
paper presets' spaces, likewise); in the demo space, which searches 2 or 4 heads, re-choosing by
CKA cut almost every layer to one head (per-sequence head CKA 0.91-0.995 on trained supernets,
not an estimator artifact), a count the search never saw, for no saving
(``benchmarks/README.md`` section 12).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from elm_distill import head_cka_matrix, per_head_features, redundant_heads
from elm_space import Architecture, SearchSpace
from elm_train.training.supernet_training import SupernetKD


def heads_after_pruning(num_heads: int, removed: int, width: int) -> int:
    kept = max(1, num_heads - removed)
    while width % kept:
        kept -= 1
    return kept


def searched_heads(space: SearchSpace, arch: Architecture) -> list[bool]:
    """Per layer of ``arch``: whether its candidate offers more than one head count, so that the
    search chose the count."""
    return [
        len(space.layers[space.layer_index(i)][choice.candidate].heads) > 1
        for i, choice in enumerate(arch.layers)
    ]


@torch.no_grad()
def choose_heads(
    model: SupernetKD,
    arch: Architecture,
    val: list[dict[str, torch.Tensor]],
    threshold: float,
    keep: Sequence[bool] | None = None,
) -> tuple[Architecture, list[dict[str, Any]]]:
    """The architecture with each layer's head count chosen by CKA, and a report per layer; a
    layer with ``keep[i]`` true keeps its count (its CKA is still reported)."""
    contexts: list[list[torch.Tensor]] = [[] for _ in arch.layers]
    masks = []
    for batch in val:
        mask = batch["attention_mask"]
        out = model.supernet(
            batch["input_ids"], arch=arch, attention_mask=mask, output_attention_contexts=True
        )
        masks.append(mask)
        for layer, ctx in enumerate(out.attention_contexts):
            size, heads, tokens, dim = ctx.shape
            contexts[layer].append(ctx.transpose(1, 2).reshape(size, tokens, heads * dim))
    new_heads, report = [], []
    for layer, choice in enumerate(arch.layers):
        features = per_head_features(torch.cat(contexts[layer]), choice.heads, torch.cat(masks))
        cka = head_cka_matrix(features)
        removed = redundant_heads(cka, threshold)
        kept = heads_after_pruning(
            choice.heads, len(removed), choice.attention_width(arch.backbone.hidden_size)
        )
        searched = keep is not None and keep[layer]
        if searched:
            kept, removed = choice.heads, []
        new_heads.append(kept)
        off_diagonal = cka[~torch.eye(choice.heads, dtype=torch.bool)]
        report.append(
            {
                "layer": layer,
                "heads": choice.heads,
                "removed": removed,
                "kept": kept,
                "searched": searched,
                "mean_cka": float(off_diagonal.mean()) if off_diagonal.numel() else None,
            }
        )
    return arch.with_heads(new_heads), report
