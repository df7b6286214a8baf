"""Linear CKA (Kornblith et al., 2019): how similar two sets of representations are.

ELM uses it to find redundant attention heads: the per-head context vectors of ``n`` examples are
compared pairwise, and a head that is nearly a copy (CKA above 0.9) of an earlier one is dropped
(METHOD.md section 2b). CKA is computed from the examples' Gram matrices, so the two inputs may
have different widths.

The biased estimator is the one ELM's reference uses. It is inflated for few examples and wide
features (two unrelated random heads can score well above 0); the debiased form (unbiased HSIC of
Song et al., 2012) corrects that and needs more than 3 examples. Everything is done in float64:
CKA is a diagnostic over small ``n x n`` Gram matrices, so the precision costs nothing that
matters, and near-1 similarities are exactly where a threshold bites.
"""

from __future__ import annotations

import torch
from torch import Tensor

from elm_distill._checks import check_floating, check_rank, token_mask


def _hsic_matrix(grams: Tensor, debiased: bool) -> Tensor:
    """Pairwise HSIC between stacked Gram matrices ``[G, n, n]`` -> ``[G, G]`` (common scale dropped)."""
    n = grams.shape[-1]
    if not debiased:
        centred = grams - grams.mean(dim=-1, keepdim=True)
        centred = centred - centred.mean(dim=-2, keepdim=True)
        return torch.einsum("gij,hij->gh", centred, centred)
    if n < 4:
        raise ValueError(f"debiased CKA needs at least 4 examples, got {n}")
    off_diagonal = grams - torch.diag_embed(torch.diagonal(grams, dim1=-2, dim2=-1))
    totals = off_diagonal.sum(dim=(-2, -1))  # 1ᵀK̃1, [G]
    row_sums = off_diagonal.sum(dim=-1)  # K̃1, [G, n]
    trace_term = torch.einsum("gij,hij->gh", off_diagonal, off_diagonal)  # tr(K̃ L̃), K̃ symmetric
    return (
        trace_term
        + torch.outer(totals, totals) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * row_sums @ row_sums.transpose(0, 1)
    ) / (n * (n - 3))


def _cka_from_grams(grams: Tensor, debiased: bool) -> Tensor:
    hsic = _hsic_matrix(grams, debiased)
    norms = torch.sqrt(torch.diagonal(hsic))
    return hsic / torch.outer(norms, norms)


def _as_examples(name: str, x: Tensor) -> Tensor:
    check_floating(name, x)
    check_rank(name, x, (2,), "[examples, features]")
    return x.to(torch.float64)


def linear_cka(x: Tensor, y: Tensor, debiased: bool = False) -> Tensor:
    """CKA between representations ``x`` ``[n, d1]`` and ``y`` ``[n, d2]`` of the same n examples.

    1 for representations equal up to rotation and isotropic scaling; returned as float64.
    """
    x = _as_examples("x", x)
    y = _as_examples("y", y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x has {x.shape[0]} examples but y has {y.shape[0]}; CKA compares the same examples"
        )
    grams = torch.stack([x @ x.T, y.to(x.device) @ y.to(x.device).T])
    return _cka_from_grams(grams, debiased)[0, 1]


def head_cka_matrix(features: Tensor, debiased: bool = False) -> Tensor:
    """Pairwise CKA between heads: ``[heads, n, d]`` -> ``[heads, heads]`` (float64, symmetric)."""
    check_floating("features", features)
    check_rank("features", features, (3,), "[heads, examples, features]")
    x = features.to(torch.float64)
    return _cka_from_grams(x @ x.transpose(-1, -2), debiased)


def per_head_features(context: Tensor, num_heads: int, mask: Tensor | None = None) -> Tensor:
    """Reshape an attention context ``[B, T, heads·d]`` to CKA input ``[heads, B, T·d]``.

    Each example (sequence) becomes one flattened vector per head, as in ELM's head pruning.
    Padded tokens are zeroed so they add nothing to the Gram matrices; the reference keeps them.
    """
    check_floating("context", context)
    check_rank("context", context, (3,), "[batch, tokens, heads * head_dim]")
    batch, tokens, width = context.shape
    if num_heads < 1 or width % num_heads:
        raise ValueError(f"num_heads={num_heads} does not divide the context width {width}")
    real = token_mask(mask, context.shape[:2], context.device)
    if real is not None:
        context = context.masked_fill(~real[..., None], 0.0)
    per_head = context.reshape(batch, tokens, num_heads, width // num_heads).permute(2, 0, 1, 3)
    return per_head.reshape(num_heads, batch, -1)


def redundant_heads(cka: Tensor, threshold: float = 0.9) -> list[int]:
    """Heads to drop: every head more similar than ``threshold`` to an earlier, kept head.

    Walks heads in order (METHOD.md section 2b); returns sorted, distinct indices, which fixes the
    reference's duplicate entries that undercount the kept heads.
    """
    check_rank("cka", cka, (2,), "[heads, heads]")
    if cka.shape[0] != cka.shape[1]:
        raise ValueError(f"cka must be square, got shape {tuple(cka.shape)}")
    heads = cka.shape[0]
    removed: set[int] = set()
    for j in range(heads):
        if j in removed:
            continue
        removed.update(k for k in range(j + 1, heads) if float(cka[j, k]) > threshold)
    return sorted(removed)
