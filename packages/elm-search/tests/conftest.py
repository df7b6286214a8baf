"""Synthetic spaces and fitness functions with optima known independently of the search."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from elm_search import BlockLatency, LatencyTable
from elm_space import Architecture, Backbone, BlockKind, CandidateSpec, SearchSpace


def synthetic_space(num_layers: int) -> SearchSpace:
    """Per layer 4 candidates x 2 head counts = 8 options, so 8**num_layers architectures."""
    cands = (
        CandidateSpec(kind=BlockKind.BERT, ffn_width=32, max_ffn_width=128, increment=32, heads=(2, 4)),
        CandidateSpec(kind=BlockKind.BERT, ffn_width=64, max_ffn_width=128, increment=32, heads=(2, 4)),
        CandidateSpec(
            kind=BlockKind.MOBILE, ffn_width=16, max_ffn_width=64, increment=16, heads=(2, 4), inner_size=16
        ),
        CandidateSpec(
            kind=BlockKind.MOBILE, ffn_width=32, max_ffn_width=64, increment=16, heads=(2, 4), inner_size=16
        ),
    )
    backbone = Backbone(hidden_size=32, vocab_size=100, max_positions=64)
    return SearchSpace(name=f"synthetic-{num_layers}", backbone=backbone, layers=(cands,) * num_layers)


@dataclass
class ChainProblem:
    """Fitness = sum of per-layer scores + an interaction between neighbouring layers.

    The interaction makes layers depend on each other (no layer can be optimised alone), yet the
    optimum is exactly computable by dynamic programming along the chain.
    """

    space: SearchSpace
    unary: np.ndarray  # (layers, options)
    pair: np.ndarray  # (layers - 1, options, options)
    calls: list[str] = field(default_factory=list)
    _index: list[dict] = field(default_factory=list)

    def genome(self, arch: Architecture) -> list[int]:
        if not self._index:
            self._index = [
                {o: j for j, o in enumerate(self.space.options(i))} for i in range(self.space.num_layers)
            ]
        return [self._index[i][c] for i, c in enumerate(arch.layers)]

    def __call__(self, arch: Architecture) -> float:
        self.calls.append(arch.stable_hash())
        g = self.genome(arch)
        total = sum(self.unary[i, gi] for i, gi in enumerate(g))
        total += sum(self.pair[i, g[i], g[i + 1]] for i in range(len(g) - 1))
        return float(total)

    def optimum(self) -> float:
        best = self.unary[0].copy()
        for i in range(1, len(self.unary)):
            best = (best[:, None] + self.pair[i - 1]).max(axis=0) + self.unary[i]
        return float(best.max())


def chain_problem(space: SearchSpace, seed: int, interaction: float = 0.3) -> ChainProblem:
    rng = np.random.default_rng(seed)
    n, k = space.num_layers, len(space.options(0))
    return ChainProblem(space, rng.uniform(0, 1, (n, k)), rng.uniform(0, interaction, (n - 1, k, k)))


@pytest.fixture
def make_problem() -> Callable[..., ChainProblem]:
    return chain_problem


@pytest.fixture
def space3() -> SearchSpace:
    return synthetic_space(3)


@pytest.fixture
def space6() -> SearchSpace:
    return synthetic_space(6)


@pytest.fixture
def make_space() -> Callable[[int], SearchSpace]:
    return synthetic_space


def synthetic_table(
    space: SearchSpace, seed: int, embedding_ms: float = 0.7, head_ms: float = 0.2
) -> LatencyTable:
    """A table with a random latency for every block shape the space offers."""
    rng = np.random.default_rng(seed)
    shapes = sorted(
        {
            (o.kind, o.ffn_width, o.heads, o.inner_size)
            for i in range(space.num_layers)
            for o in space.options(i)
        },
        key=repr,
    )
    blocks = tuple(
        BlockLatency(kind=k, ffn_width=w, heads=h, inner_size=inner, ms=float(rng.uniform(0.5, 3.0)))
        for k, w, h, inner in shapes
    )
    return LatencyTable(
        hidden_size=space.backbone.hidden_size,
        batch_size=1,
        seq_len=64,
        device="synthetic",
        embedding_ms=embedding_ms,
        head_ms=head_ms,
        blocks=blocks,
    )


@pytest.fixture
def make_table() -> Callable[..., LatencyTable]:
    return synthetic_table
