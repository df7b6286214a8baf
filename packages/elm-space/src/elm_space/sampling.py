"""Uniform sampling, neighbours, and the mean size of a space.

Sampling uses ``random.Random``, whose Mersenne Twister and ``randrange`` give the same
sequence for the same seed on every platform and Python process, so a seed names a sample.
"""

from __future__ import annotations

import random
from statistics import fmean

from elm_space.counting import embedding_params, layer_params
from elm_space.schema import Architecture, LayerChoice, SearchSpace, SpaceError, as_int


def _rng(seed: int | str | random.Random) -> random.Random:
    """A stream from a seed: an int, a str (hashed with SHA-512, stable across processes), or a
    ``random.Random`` to draw from."""
    if isinstance(seed, random.Random):
        return seed
    if isinstance(seed, str | bytes):
        return random.Random(seed)
    return random.Random(as_int(seed, "seed"))


def sample_choice(space: SearchSpace, layer: int, rng: random.Random) -> LayerChoice:
    """A candidate uniformly, then a head count uniformly: candidates are equally likely, as in
    single-path one-shot training, however many head counts each lists."""
    candidates = space.layers[space.layer_index(layer)]
    j = rng.randrange(len(candidates))
    cand = candidates[j]
    heads = cand.heads[rng.randrange(len(cand.heads))]
    return LayerChoice(
        candidate=j, kind=cand.kind, ffn_width=cand.ffn_width, heads=heads, inner_size=cand.inner_size
    )


def sample(space: SearchSpace, seed: int | random.Random) -> Architecture:
    """One architecture; pass a ``random.Random`` to draw a sequence from one stream."""
    rng = _rng(seed)
    return Architecture(
        backbone=space.backbone,
        layers=tuple(sample_choice(space, i, rng) for i in range(space.num_layers)),
    )


def sample_many(space: SearchSpace, n: int, seed: int | random.Random) -> list[Architecture]:
    if as_int(n, "sample_many: n") < 0:
        raise SpaceError(f"sample_many: n={n} must be >= 0")
    rng = _rng(seed)
    return [sample(space, rng) for _ in range(n)]


def neighbours(space: SearchSpace, arch: Architecture) -> list[Architecture]:
    """Every architecture of the space that differs from ``arch`` in exactly one layer."""
    space.check(arch)
    result = []
    for i, current in enumerate(arch.layers):
        for option in space.options(i):
            if option != current:
                layers = list(arch.layers)
                layers[i] = option
                result.append(Architecture(backbone=arch.backbone, layers=tuple(layers)))
    return result


def mean_params(space: SearchSpace) -> float:
    """Expected parameter count (no head) of a uniformly sampled architecture, exactly.

    Parameters add up layer by layer and head counts do not change them, so the expectation is
    the embedding plus each layer's mean over its candidates; no Monte-Carlo estimate needed.
    """
    h = space.backbone.hidden_size
    total = float(embedding_params(space.backbone))
    for i, cands in enumerate(space.layers):
        opts = {c.candidate: c for c in space.options(i)}
        total += fmean(layer_params(opts[j], h) for j in range(len(cands)))
    return total
