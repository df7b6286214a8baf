import random
from collections import Counter

import pytest

from elm_space import BlockKind, SpaceError, count_params, grow, grow_ranked, mean_params, preset, sample


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


def test_grow_ranked_stops_at_the_first_pair_over_the_budget(tiny):
    # tiny (H 32, 4 candidates a layer): a BERT 32 -> 64 adds (32*32+32)*2 - 32 = 2080 to its layer,
    # 520 to the mean; a mobile 16 -> 32 (inner 16) adds (16*16+16)*2 - 16 = 528, 132 to the mean.
    base = mean_params(tiny)
    assert base == 22428
    ranking = [(0, 0), (1, 0), (0, 2)]
    grown, chosen = grow_ranked(tiny, ranking, limit=3, budget=22428 + 520 + 519)
    # (1, 0) does not fit; (0, 2) would, but growth keeps to the top of the ranking and stops
    assert chosen == [(0, 0)] and mean_params(grown) == base + 520
    grown, chosen = grow_ranked(tiny, ranking, limit=3, budget=22428 + 520 + 520 + 132)
    assert chosen == ranking and mean_params(grown) == 22428 + 1172  # reaching the budget is allowed
    same, none = grow_ranked(tiny, ranking, limit=3, budget=22428 + 519)
    assert none == [] and same == tiny


# --- the paper presets at full size (GROWTH.md): growth runs, fills the budget, never passes it ---


def pca_ranking(space, seed):
    """A plausible PCA ranking of every (layer, candidate). A PCA count is at most the rank of the
    pre-activations, min(width, input width + 1): the input is H wide for a BERT FFN and the inner
    size for a mobile one (+1 for the bias). The count is 0.75-0.95 of that bound for BERT blocks
    (eta 0.99) and 0.45-0.7 for mobile ones (eta 0.9), drawn afresh each epoch."""
    rng = random.Random(seed)
    h = space.backbone.hidden_size
    counts = {}
    for i, layer in enumerate(space.layers):
        for j, spec in enumerate(layer):
            bert = spec.kind is BlockKind.BERT
            share = rng.uniform(0.75, 0.95) if bert else rng.uniform(0.45, 0.7)
            counts[(i, j)] = share * min(spec.ffn_width, (h if bert else spec.inner_size) + 1)
    return sorted(counts, key=lambda k: (-counts[k], k))


def by_hand_mean(space):
    """The mean sampled size from count_params: parameters add up over layers and every layer's
    candidate is uniform, so the mean over the architectures that take candidate j in every layer
    (j = 0..n-1) is the mean over the whole space."""
    n = len(space.layers[0])
    archs = [space.architecture([space.options(i)[j] for i in range(space.num_layers)]) for j in range(n)]
    total = sum(count_params(a) for a in archs)
    assert total % n == 0  # every mean below is a whole number of parameters
    return total // n


# (layers x 3 x candidates per layer) // 10 epochs pairs may grow per epoch (METHOD.md 2a); growth
# after epochs 1..9 (never after the last). Every step of the trajectory is worked out by hand:
# a BERT block of width w at H = 528 has 1,119,888 + 1057w parameters and a mobile one 368,808 + 265w
# (test_counting.py), so elm-small starts at 4,382,544 + 12 * (1,259,412 + 403,788) / 2 = 14,361,744
# and each BERT increment of 132 adds 1057 * 132 / 12 = 11,627 to the mean (a mobile one 2,915).
# At H = 192 (elm-micro) a BERT block has 149,184 + 385w parameters: +48 adds 385 * 48 / 6 = 3,080.
FULL_SIZE = {
    # name: (pairs per epoch, pairs grown after each epoch, mean sampled size after each epoch)
    "elm-small": (
        43,
        [43, 43, 29, 0, 0, 0, 0, 0, 0],  # 1,338,256 of room / 11,627 = 115 increments
        [14_361_744, 14_861_705, 15_361_666] + [15_698_849] * 7,  # 1,151 below 15.7M at the end
    ),
    "elm-tiny": (
        21,
        [21, 21, 11, 0, 0, 0, 0, 0, 0],  # 627,856 / 11,627 = 53.99: 53 increments
        [9_372_144, 9_616_311, 9_860_478] + [9_988_375] * 7,  # 11,625 below 10M, 2 short of one more
    ),
    "elm-micro": (
        10,
        [10] * 6 + [0] * 3,  # the reference's widths 48, 96, 144: 185,504 / 3,080 = 60 increments
        [4_814_496 + 30_800 * k for k in range(7)] + [4_999_296] * 3,  # 704 below 5M
    ),
}


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_growth_fills_the_budget_and_never_passes_it(name):
    per_epoch, grown_counts, means = FULL_SIZE[name]
    space = preset(name)
    n = len(space.layers[0])
    assert space.num_layers * 3 * n // 10 == per_epoch
    assert mean_params(space) == by_hand_mean(space) == means[0]
    trajectory, counts = [mean_params(space)], []
    for epoch in range(9):
        ranking = pca_ranking(space, epoch)
        new, grown = grow_ranked(space, ranking, per_epoch)
        growable = [p for p in ranking if space.layers[p[0]][p[1]].can_grow]
        assert grown == growable[: len(grown)]  # always the top of the ranking
        assert all(space.layers[i][j].kind is BlockKind.BERT for i, j in grown)  # they rank first
        if len(grown) < per_epoch:  # stopped by the budget: the next pair would pass it
            assert mean_params(grow(new, [growable[len(grown)]])) > space.param_budget
        space = new
        trajectory.append(mean_params(space))
        counts.append(len(grown))
        assert trajectory[-1] <= space.param_budget
    assert counts == grown_counts
    assert trajectory == means
    assert mean_params(space) == by_hand_mean(space)


@pytest.mark.parametrize("name", ["elm-small", "elm-tiny"])
def test_the_reference_widths_would_never_grow(name, staircase):
    # With candidate j of a kind at j + 1 increments the mean is above the budget from the start:
    # 16,979,304 > 15.7M (elm-small), 10,680,924 > 10M (elm-tiny), so the gate refuses every growth.
    space = staircase(preset(name))
    assert mean_params(space) == {"elm-small": 16_979_304, "elm-tiny": 10_680_924}[name]
    same, grown = grow_ranked(space, pca_ranking(space, 0), 43)
    assert grown == [] and same == space


@pytest.mark.parametrize("seed", range(3))
def test_any_ranking_keeps_elm_small_within_its_budget(seed):
    rng = random.Random(seed)
    space = preset("elm-small")
    pairs = [(i, j) for i in range(12) for j in range(12)]
    for _ in range(9):
        ranking = rng.sample(pairs, len(pairs))
        growable = [p for p in ranking if space.layers[p[0]][p[1]].can_grow]
        space, grown = grow_ranked(space, ranking, 43)
        assert grown == growable[: len(grown)]
        assert mean_params(space) <= 15_700_000
    assert 15_700_000 - mean_params(space) < 11_627  # within one BERT increment of the budget


@pytest.mark.parametrize(("name", "rounds"), [("demo", 2), ("demo-clm", 1)])
def test_the_demos_never_reach_their_budget(name, rounds):
    # The demo run grows 4 pairs after each of its epochs but the last (3 epochs; demo-clm 2), so
    # the budget never cuts its growth short and the demos grow as they did before the budget was
    # checked per pair. Worst case, the costliest pairs first: BERT +128 at H = 128 adds 32,896 / 4.
    space = preset(name)
    for _ in range(rounds):
        costliest = sorted(
            ((i, j) for i, layer in enumerate(space.layers) for j, c in enumerate(layer)),
            key=lambda p: -mean_params(grow(space, [p])) if space.layers[p[0]][p[1]].can_grow else 0,
        )
        space, grown = grow_ranked(space, costliest, 4)
        assert len(grown) == 4
    assert mean_params(space) <= preset(name).param_budget - 40_000


# (space, pairs grown, mean after growth, {kind: {width: candidates}}) after 9 rounds (GROWTH.md, section 1)
START_OPTIONS = {
    "elm-small": (115, 15_698_849, {"bert": {132: 29, 396: 14, 528: 29}, "mobile": {132: 72}}),
    "elm-small-staircase": (
        0,
        16_979_304,
        {k: {132 * (j + 1): 12 for j in range(6)} for k in ("bert", "mobile")},
    ),
    "elm-tiny": (53, 9_988_375, {"bert": {132: 15, 396: 10, 528: 11}, "mobile": {132: 36}}),
    "elm-tiny-staircase": (
        0,
        10_680_924,
        {k: {132 * (j + 1): 6 for j in range(6)} for k in ("bert", "mobile")},
    ),
}


@pytest.mark.parametrize("name", sorted(START_OPTIONS))
def test_starting_width_options(name, staircase):
    """The searched widths after growth with each starting-width option (the table in GROWTH.md)."""
    pairs, mean, widths = START_OPTIONS[name]
    space = preset(name)
    if name.endswith("-staircase"):  # the reference's widths, as the test helper reaches them by growth
        assert space == staircase(preset(name.removesuffix("-staircase"))).model_copy(update={"name": name})
    per_epoch = space.num_layers * 3 * len(space.layers[0]) // 10
    grown = 0
    for epoch in range(9):
        space, done = grow_ranked(space, pca_ranking(space, epoch), per_epoch)
        grown += len(done)
    assert grown == pairs and mean_params(space) == mean
    found = {
        kind.value: dict(
            sorted(Counter(c.ffn_width for layer in space.layers for c in layer if c.kind is kind).items())
        )
        for kind in BlockKind
    }
    assert found == widths
