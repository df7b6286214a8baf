"""Each layer's head count by CKA between its heads (METHOD.md section 2b).

Heads whose attention contexts are more similar than the threshold to an earlier kept head are
dropped (a set, so a head is never counted twice), and the count is lowered until it divides the
block's attention width. Only the split of the attention width changes, so the extracted weights
and the parameter count stay as they are.
"""

from __future__ import annotations

from typing import Any

import torch

from elm_distill import head_cka_matrix, per_head_features, redundant_heads
from elm_space import Architecture
from elm_train.supernet_training import SupernetKD


def heads_after_pruning(num_heads: int, removed: int, width: int) -> int:
    kept = max(1, num_heads - removed)
    while width % kept:
        kept -= 1
    return kept


@torch.no_grad()
def choose_heads(
    model: SupernetKD,
    arch: Architecture,
    val: list[dict[str, torch.Tensor]],
    threshold: float,
) -> tuple[Architecture, list[dict[str, Any]]]:
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
        new_heads.append(kept)
        off_diagonal = cka[~torch.eye(choice.heads, dtype=torch.bool)]
        report.append(
            {
                "layer": layer,
                "heads": choice.heads,
                "removed": removed,
                "kept": kept,
                "mean_cka": float(off_diagonal.mean()) if off_diagonal.numel() else None,
            }
        )
    return arch.with_heads(new_heads), report
