"""The Pareto front against a brute-force definition."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from elm_eval.plots import pareto_front


def _brute_force_front(xs: list[float], ys: list[float]) -> set[int]:
    def dominates(j: int, i: int) -> bool:
        return xs[j] <= xs[i] and ys[j] >= ys[i] and (xs[j] < xs[i] or ys[j] > ys[i])

    return {i for i in range(len(xs)) if not any(dominates(j, i) for j in range(len(xs)))}


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=30))
def test_pareto_front_equals_brute_force(points: list[tuple[int, int]]) -> None:
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    front = pareto_front(xs, ys)
    assert set(front) == _brute_force_front(xs, ys)
    assert [xs[i] for i in front] == sorted(xs[i] for i in front)
    lower_is_better = pareto_front(xs, ys, maximize_y=False)
    assert set(lower_is_better) == _brute_force_front(xs, [-y for y in ys])
