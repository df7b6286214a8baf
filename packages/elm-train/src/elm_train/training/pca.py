"""The PCA statistic behind the dynamic dimension (METHOD.md section 2a).

For a sampled FFN, count how many principal components of its pre-activations explain more than
``eta`` of their variance. A block whose activations need nearly all of their width is starved
of width, so it is the one that grows. Padding tokens are left out (the reference counts them,
which lets the padding pattern drive growth).
"""

from __future__ import annotations

from collections import defaultdict

import torch

from elm_train.runtime import distributed as dist


def pca_count(features: torch.Tensor, eta: float) -> int:
    """Smallest k whose top-k eigenvalues of the feature covariance hold more than ``eta`` of the total."""
    x = features.detach().reshape(-1, features.shape[-1]).to(torch.float64)
    if x.shape[0] < 2:
        raise ValueError(f"pca_count needs at least 2 tokens, got {x.shape[0]}")
    x = x - x.mean(dim=0, keepdim=True)
    cov = x.T @ x / (x.shape[0] - 1)
    eig = torch.linalg.eigvalsh(cov).flip(0).clamp_min(0)
    total = eig.sum()
    if total <= 0:
        return 1
    ratio = eig.cumsum(0) / total
    return int((ratio > eta).nonzero()[0].item()) + 1 if bool((ratio > eta).any()) else int(eig.numel())


def real_tokens(features: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """[B, T, w] -> [N, w] keeping only positions where the mask is 1."""
    if attention_mask is None:
        return features.reshape(-1, features.shape[-1])
    return features[attention_mask.bool()]


class PcaTracker:
    """Running mean PCA count per (layer, candidate), over the batches that sampled it."""

    def __init__(self) -> None:
        self.sums: dict[tuple[int, int], float] = defaultdict(float)
        self.counts: dict[tuple[int, int], int] = defaultdict(int)

    def add(self, layer: int, candidate: int, count: int) -> None:
        self.sums[(layer, candidate)] += count
        self.counts[(layer, candidate)] += 1

    def means(self) -> dict[tuple[int, int], float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}

    def ranking(self) -> list[tuple[int, int]]:
        """Pairs by mean count, highest first; ties broken by position so the order is stable."""
        means = self.means()
        return sorted(means, key=lambda k: (-means[k], k))

    def combined_over_ranks(self, num_layers: int, num_candidates: int) -> PcaTracker:
        """The statistic over every rank's batches: sums and counts added up across ranks.

        Each rank sees other data, so its own means differ; growth decided on the combined means
        is the same on all ranks. On one process the tracker itself is returned (no arithmetic,
        so a one-process run stays exactly as it was).
        """
        if dist.world_size() == 1:
            return self
        sums = torch.zeros(num_layers, num_candidates, dtype=torch.float64)
        counts = torch.zeros(num_layers, num_candidates, dtype=torch.float64)
        for (layer, cand), total in self.sums.items():
            sums[layer, cand] = total
            counts[layer, cand] = self.counts[(layer, cand)]
        both = dist.sum_over_ranks(torch.stack([sums, counts]))
        combined = PcaTracker()
        for layer, cand in (both[1] > 0).nonzero().tolist():
            combined.sums[(layer, cand)] = float(both[0, layer, cand])
            combined.counts[(layer, cand)] = int(both[1, layer, cand])
        return combined

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()

    def to_json(self) -> list[list[float]]:
        return [
            [layer, cand, self.sums[(layer, cand)], self.counts[(layer, cand)]]
            for layer, cand in sorted(self.sums)
        ]

    @classmethod
    def from_json(cls, rows: list[list[float]]) -> PcaTracker:
        tracker = cls()
        for layer, cand, total, count in rows:
            tracker.sums[(int(layer), int(cand))] = float(total)
            tracker.counts[(int(layer), int(cand))] = int(count)
        return tracker
