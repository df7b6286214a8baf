import pytest

from elm_space import SpaceError, grow, grow_ranked, mean_params, sample


def test_grow_returns_new_space_and_keeps_old(tiny):
    grown = grow(tiny, [(0, 0), (2, 3)])
    assert tiny.layers[0][0].ffn_width == 32
    assert grown.layers[0][0].ffn_width == 64
    assert grown.layers[2][3].ffn_width == 32 + 16
    assert grown.layers[1] == tiny.layers[1]
    assert mean_params(grown) > mean_params(tiny)


def test_old_architectures_leave_a_grown_space(tiny):
    arch = sample(tiny, 0)
    layer, cand = 0, arch.layers[0].candidate
    assert not grow(tiny, [(layer, cand)]).contains(arch)


def test_grow_past_maximum_is_refused(tiny):
    once = grow(tiny, [(0, 1)])  # 64 -> 96 = max
    with pytest.raises(
        SpaceError, match=r"layers\[0\]\[1\]\.ffn_width=96 \+ increment 32 is above max_ffn_width=96"
    ):
        grow(once, [(0, 1)])
    with pytest.raises(SpaceError, match="candidate 7 is not in layer 0"):
        grow(tiny, [(0, 7)])
    with pytest.raises(SpaceError, match="listed twice"):
        grow(tiny, [(0, 0), (0, 0)])


def test_grow_ranked_skips_full_candidates_and_respects_budget(tiny):
    full = grow(tiny, [(0, 1)])
    grown, chosen = grow_ranked(full, [(0, 1), (1, 0), (2, 2)], limit=2)
    assert chosen == [(1, 0), (2, 2)]
    assert grown.layers[1][0].ffn_width == 64
    same, none = grow_ranked(full, [(1, 0)], limit=2, budget=int(mean_params(full)) - 1)
    assert none == [] and same == full
