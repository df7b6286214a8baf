"""The dynamic dimension: growing candidates' FFN widths (METHOD.md section 2a).

Growth returns a new space. The supernet keeps the old space until it has widened its own
weights, so there is never a moment where the two disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from elm_space.counting import embedding_params, layer_params
from elm_space.schema import CandidateSpec, LayerChoice, SearchSpace, SpaceError, as_int, revalidated


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


def _spec_params(spec: CandidateSpec, hidden_size: int, ffn_width: int) -> int:
    """Parameters of one candidate at ``ffn_width`` (head counts never change them)."""
    choice = LayerChoice(
        candidate=0, kind=spec.kind, ffn_width=ffn_width, heads=spec.heads[0], inner_size=spec.inner_size
    )
    return layer_params(choice, hidden_size)


def _exact_mean_params(space: SearchSpace) -> Fraction:
    """:func:`~elm_space.mean_params` as an exact fraction, for budget comparisons without rounding."""
    h = space.backbone.hidden_size
    total = Fraction(embedding_params(space.backbone))
    for cands in space.layers:
        total += Fraction(sum(_spec_params(c, h, c.ffn_width) for c in cands), len(cands))
    return total


def grow_ranked(
    space: SearchSpace, ranked: Iterable[tuple[int, int]], limit: int, budget: int | None = None
) -> tuple[SearchSpace, list[tuple[int, int]]]:
    """Grow up to ``limit`` of the highest-ranked pairs that can still grow, within ``budget``.

    The budget (the space's own ``param_budget`` when not given; no budget when both are
    ``None``) bounds the mean parameter count of a uniformly sampled architecture, computed
    exactly as :func:`~elm_space.mean_params` does. Pairs are taken in rank order, skipping those
    already at their maximum width; growth stops before the first pair whose increment would
    take the mean above the budget. So the pairs that grow are always the top of the ranking, the
    grown space never passes the budget, and a space already above it does not grow (the
    reference's check). GROWTH.md beside this package's README gives the reasons. Returns the new
    space and the pairs that grew, in rank order.
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
    h = space.backbone.hidden_size
    mean = _exact_mean_params(space) if budget is not None else Fraction(0)
    chosen: list[tuple[int, int]] = []
    for layer, cand in ranked:
        if len(chosen) >= limit:
            break
        spec = space.layers[layer][cand]
        if not spec.can_grow or (layer, cand) in chosen:
            continue
        if budget is not None:
            wider = _spec_params(spec, h, spec.ffn_width + spec.increment)
            after = mean + Fraction(wider - _spec_params(spec, h, spec.ffn_width), len(space.layers[layer]))
            if after > budget:
                break
            mean = after
        chosen.append((layer, cand))
    return grow(space, chosen), chosen
