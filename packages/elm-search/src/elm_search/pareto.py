"""NSGA-II's non-dominated sorting and crowding distance, for the multi-objective mode.

Every function here takes points to *minimise*; callers turn a maximised score into a
minimised one by negating it. Fronts are lists of indices into the points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Point = Sequence[float]


def dominates(p: Point, q: Point) -> bool:
    """p is no worse than q in every objective and strictly better in one."""
    return all(a <= b for a, b in zip(p, q, strict=True)) and any(a < b for a, b in zip(p, q, strict=True))


def non_dominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Deb's fast non-dominated sort: front 0 is the Pareto front, front 1 the front once 0 is removed..."""
    n = len(points)
    dominated_by: list[list[int]] = [[] for _ in range(n)]  # indices each point dominates
    domination_count = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominated_by[i].append(j)
                domination_count[j] += 1
            elif dominates(points[j], points[i]):
                dominated_by[j].append(i)
                domination_count[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if domination_count[i] == 0]
    while current:
        fronts.append(current)
        following = []
        for i in current:
            for j in dominated_by[i]:
                domination_count[j] -= 1
                if domination_count[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def crowding_distance(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """How isolated each point of one front is; the extremes get infinity so they are kept.

    Per objective, a point's distance is the gap between its two neighbours along that
    objective, divided by the objective's range on the front; the distances add up.
    """
    distance = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for m in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: (points[i][m], i))
        low, high = points[ordered[0]][m], points[ordered[-1]][m]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for before, mid, after in zip(ordered, ordered[1:], ordered[2:], strict=False):
            distance[mid] += (points[after][m] - points[before][m]) / (high - low)
    return distance


def nsga_order(points: Sequence[Point]) -> list[int]:
    """All indices, best first: by front, then by crowding distance (larger first), then index."""
    order: list[int] = []
    for front in non_dominated_sort(points):
        crowd = crowding_distance(points, front)
        order.extend(sorted(front, key=lambda i: (-crowd[i], i)))
    return order


def first_front(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points, in index order, without sorting every front.

    After a lexicographic sort no point can be dominated by one that comes later, so each
    point only has to be compared with the front found so far (which stays small), instead
    of with all points as the full sort does: this is what keeps the final front of a long
    run's history cheap.
    """
    front: list[int] = []
    for i in sorted(range(len(points)), key=lambda i: (tuple(points[i]), i)):
        if not any(dominates(points[j], points[i]) for j in front):
            front.append(i)
    return sorted(front)
