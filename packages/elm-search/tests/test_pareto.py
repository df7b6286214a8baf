import math
import random

import numpy as np
import pytest

from elm_search import crowding_distance, dominates, first_front, non_dominated_sort, nsga_order


def brute_fronts(points):
    """Peel fronts by the definition: a point is in the current front if nothing left dominates it."""
    pts = np.asarray(points, dtype=np.float64)
    left = set(range(len(pts)))
    fronts = []
    while left:
        front = sorted(
            i
            for i in left
            if not any(np.all(pts[j] <= pts[i]) and np.any(pts[j] < pts[i]) for j in left if j != i)
        )
        fronts.append(front)
        left -= set(front)
    return fronts


def brute_crowding(points, front):
    pts = np.asarray(points, dtype=np.float64)[front]
    n, m = pts.shape
    dist = np.zeros(n)
    if n <= 2:
        return dict.fromkeys(front, math.inf)
    for k in range(m):
        order = np.lexsort((np.array(front), pts[:, k]))
        span = pts[order[-1], k] - pts[order[0], k]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span == 0:
            continue
        for a, b, c in zip(order[:-2], order[1:-1], order[2:], strict=True):
            dist[b] += (pts[c, k] - pts[a, k]) / span
    return {front[i]: float(dist[i]) for i in range(n)}


def random_points(rng, n, m, grid):
    # a coarse grid makes ties and duplicates common, which is where sorting bugs hide
    return [[rng.randrange(grid) for _ in range(m)] for _ in range(n)]


@pytest.mark.parametrize("m", [2, 3])
def test_sorting_and_crowding_match_brute_force(m):
    rng = random.Random(m)
    for trial in range(60):
        points = random_points(rng, rng.randint(1, 25), m, grid=rng.choice([3, 6, 50]))
        fronts = non_dominated_sort(points)
        assert [sorted(f) for f in fronts] == brute_fronts(points), (trial, points)
        assert first_front(points) == brute_fronts(points)[0]
        for front in fronts:
            got = crowding_distance(points, front)
            want = brute_crowding(points, front)
            assert got.keys() == want.keys()
            for i in front:
                assert got[i] == pytest.approx(want[i], rel=1e-12)


def test_nsga_order_is_front_then_crowding():
    points = [(1, 5), (2, 3), (3, 2), (5, 1), (2, 5), (4, 4), (6, 6), (3, 3)]
    # front 0: 0,1,2,3; the extremes 0 and 3 are infinitely crowded, 1 and 2 both have
    # (3-1)/4 + (5-2)/4 = 1.25, so the index breaks the tie. (3,3) is dominated only by (2,3):
    # front 1 is {4: (2,5), 7: (3,3)}, both extremes; front 2 is (4,4); front 3 is (6,6).
    assert nsga_order(points) == [0, 3, 1, 2, 4, 7, 5, 6]
    assert crowding_distance(points, [0, 1, 2, 3]) == {0: math.inf, 1: 1.25, 2: 1.25, 3: math.inf}


def test_dominates():
    assert dominates((1, 2), (1, 3))
    assert not dominates((1, 3), (1, 3))
    assert not dominates((0, 4), (1, 3))
    with pytest.raises(ValueError):
        dominates((1, 2), (1, 2, 3))
