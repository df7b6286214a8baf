"""The dynamic dimension: growing candidates' FFN widths (METHOD.md section 2a).

Growth returns a new space. The supernet keeps the old space until it has widened its own
weights, so there is never a moment where the two disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from elm_space.sampling import mean_params
from elm_space.schema import SearchSpace, SpaceError, as_int, revalidated


def _pairs(space: SearchSpace, pairs: Iterable[Any], what: str) -> list[tuple[int, int]]:
    """Each item checked as a (layer, candidate) pair of ``space``, as plain int tuples."""
    out = []
    for item in pairs:
        if isinstance(item, str | bytes) or not isinstance(item, Iterable):
            raise SpaceError(f"{what}: {item!r} is not a (layer, candidate) pair")
        pair = tuple(item)
        if len(pair) != 2:
            raise SpaceError(f"{what}: {item!r} is not a (layer, candidate) pair")
        layer, cand = (as_int(v, f"{what}: {item!r}") for v in pair)
        if not 0 <= layer < space.num_layers:
            raise SpaceError(f"{what}: layer {layer} is not in the space (0..{space.num_layers - 1})")
        size = len(space.layers[layer])
        if not 0 <= cand < size:
            raise SpaceError(f"{what}: candidate {cand} is not in layer {layer} (0..{size - 1})")
        out.append((layer, cand))
    return out


def grow(space: SearchSpace, pairs: Iterable[tuple[int, int]]) -> SearchSpace:
    """Widen each (layer, candidate) in ``pairs`` by its increment; a pair may appear once."""
    pairs = _pairs(space, pairs, "grow")
    if len(set(pairs)) != len(pairs):
        raise SpaceError(f"grow: a (layer, candidate) pair is listed twice in {pairs}")
    layers = [list(layer) for layer in space.layers]
    for layer, cand in pairs:
        spec = layers[layer][cand]
        if not spec.can_grow:
            raise SpaceError(
                f"grow: layers[{layer}][{cand}].ffn_width={spec.ffn_width} + increment {spec.increment} "
                f"is above max_ffn_width={spec.max_ffn_width}"
            )
        layers[layer][cand] = revalidated(
            spec, f"grow: layers[{layer}][{cand}]", ffn_width=spec.ffn_width + spec.increment
        )
    return revalidated(space, "grow", layers=layers)


def grow_ranked(
    space: SearchSpace, ranked: Iterable[tuple[int, int]], limit: int, budget: int | None = None
) -> tuple[SearchSpace, list[tuple[int, int]]]:
    """Grow up to ``limit`` of the highest-ranked pairs that can still grow.

    Growth is skipped entirely when the mean sampled architecture is already above ``budget``
    (the space's own ``param_budget`` when not given), as the reference does. Returns the new
    space and the pairs that grew.
    """
    ranked = _pairs(space, ranked, "grow_ranked")
    limit = as_int(limit, "grow_ranked: limit")
    if limit < 0:
        raise SpaceError(f"grow_ranked: limit={limit} must be >= 0")
    if budget is not None:
        budget = as_int(budget, "grow_ranked: budget")
        if budget <= 0:
            raise SpaceError(f"grow_ranked: budget={budget} must be a positive parameter count or None")
    budget = space.param_budget if budget is None else budget
    if budget is not None and mean_params(space) > budget:
        return space, []
    chosen: list[tuple[int, int]] = []
    for layer, cand in ranked:
        if len(chosen) >= limit:
            break
        if space.layers[layer][cand].can_grow and (layer, cand) not in chosen:
            chosen.append((layer, cand))
    return grow(space, chosen), chosen
