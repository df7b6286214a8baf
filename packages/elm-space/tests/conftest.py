import pytest

from elm_space import SearchSpace, grow, preset


@pytest.fixture
def tiny():
    return preset("tiny")


def reference_staircase(space: SearchSpace) -> SearchSpace:
    """``space`` with the reference's initial widths, candidate j of a kind at j + 1 increments,
    reached by growth from a paper preset whose candidates all start at one increment (GROWTH.md)."""
    n = len(space.layers[0])
    for k in range(1, n // 2):
        space = grow(space, [(i, j) for i in range(space.num_layers) for j in range(n) if j % (n // 2) >= k])
    return space


@pytest.fixture
def staircase():
    return reference_staircase
