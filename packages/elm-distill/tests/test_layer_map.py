"""Teacher-to-student layer maps and their errors."""

from __future__ import annotations

import pytest

from elm_distill import LayerMapError, build_layer_map


def test_uniform_last_takes_each_groups_last_layer() -> None:
    # METHOD.md: student layer l <- teacher layer (l+1)·r (1-based), i.e. (l+1)·r − 1 0-based.
    assert build_layer_map(6, 12) == [(0, 1), (1, 3), (2, 5), (3, 7), (4, 9), (5, 11)]
    assert build_layer_map(4, 12, "uniform_last") == [(0, 2), (1, 5), (2, 8), (3, 11)]


def test_uniform_first_takes_each_groups_first_layer() -> None:
    assert build_layer_map(4, 12, "uniform_first") == [(0, 0), (1, 3), (2, 6), (3, 9)]


@pytest.mark.parametrize("kind", ["uniform_last", "uniform_first"])
def test_equal_depth_is_the_identity(kind) -> None:
    assert build_layer_map(12, 12, kind) == [(layer, layer) for layer in range(12)]


def test_explicit_list() -> None:
    assert build_layer_map(3, 6, "explicit", [0, 0, 5]) == [(0, 0), (1, 0), (2, 5)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5, 12), "split evenly"),
        ((12, 6), "split evenly"),
        ((0, 12), ">= 1"),
        ((3, 6, "explicit"), "needs teacher_layers"),
        ((3, 6, "explicit", [0, 1]), "has 2 entries but the student has 3"),
        ((3, 6, "explicit", [0, 1, 6]), r"teacher_layers\[2\] = 6 is outside"),
        ((3, 6, "uniform_last", [0, 1, 2]), "only used with kind 'explicit'"),
    ],
)
def test_impossible_maps_are_explained(args, message) -> None:
    with pytest.raises(LayerMapError, match=message):
        build_layer_map(*args)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="middle"):
        build_layer_map(2, 4, "middle")
