"""The dynamic dimension: growing candidates' FFN widths (METHOD.md section 2a).

Growth returns a new space. The supernet keeps the old space until it has widened its own
weights, so there is never a moment where the two disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

from elm_space.sampling import mean_params
from elm_space.schema import SearchSpace, SpaceError


def grow(space: SearchSpace, pairs: Iterable[tuple[int, int]]) -> SearchSpace:
    """Widen each (layer, candidate) in ``pairs`` by its increment; a pair may appear once."""
    pairs = list(pairs)
    if len(set(pairs)) != len(pairs):
        raise SpaceError(f"grow: a (layer, candidate) pair is listed twice in {pairs}")
    layers = [list(layer) for layer in space.layers]
    for layer, cand in pairs:
        if not 0 <= layer < len(layers):
            raise SpaceError(f"grow: layer {layer} is not in the space (0..{len(layers) - 1})")
        if not 0 <= cand < len(layers[layer]):
            raise SpaceError(f"grow: candidate {cand} is not in layer {layer} (0..{len(layers[layer]) - 1})")
        spec = layers[layer][cand]
        if not spec.can_grow:
            raise SpaceError(
                f"grow: layers[{layer}][{cand}].ffn_width={spec.ffn_width} + increment {spec.increment} "
                f"is above max_ffn_width={spec.max_ffn_width}"
            )
        layers[layer][cand] = spec.model_copy(update={"ffn_width": spec.ffn_width + spec.increment})
    return space.model_copy(update={"layers": tuple(tuple(layer) for layer in layers)})


def grow_ranked(
    space: SearchSpace, ranked: Iterable[tuple[int, int]], limit: int, budget: int | None = None
) -> tuple[SearchSpace, list[tuple[int, int]]]:
    """Grow up to ``limit`` of the highest-ranked pairs that can still grow.

    Growth is skipped entirely when the mean sampled architecture is already above ``budget``
    (the space's own ``param_budget`` when not given), as the reference does. Returns the new
    space and the pairs that grew.
    """
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
