"""The epoch-end growth decision at the paper's size: how many pairs, and that they grow.

The arithmetic and the reasons are in packages/elm-space/GROWTH.md; elm-space's
tests/test_growth.py follows the whole 10-epoch trajectory.
"""

import elm_space
from elm_train.training.supernet_training import default_grow_count


def test_pairs_per_epoch_follow_the_reference_formula():
    # num_layers * average_add_times (3) * type_blocks (every candidate of a layer) // epochs
    assert default_grow_count(elm_space.preset("elm-small"), 10) == 43  # 12 * 3 * 12 // 10
    assert default_grow_count(elm_space.preset("elm-tiny"), 10) == 21  # 6 * 3 * 12 // 10
    assert default_grow_count(elm_space.preset("elm-micro"), 10) == 10  # 6 * 3 * 6 // 10
    assert default_grow_count(elm_space.preset("tiny"), 2) == 18  # 3 * 3 * 4 // 2
    assert default_grow_count(elm_space.preset("tiny"), 100) == 1  # never 0


def test_a_full_size_elm_small_decision_grows_candidates():
    # What SupernetTraining.end_epoch decides after the first epoch on elm-small, with a PCA ranking
    # where BERT blocks come first (their counts reach 529, a mobile block's at most 133).
    space = elm_space.preset("elm-small")
    limit = default_grow_count(space, 10)
    ranking = sorted(
        ((i, j) for i in range(12) for j in range(12)), key=lambda p: (p[1] >= 6, (7 * p[0] + p[1]) % 13)
    )
    grown_space, grown = elm_space.grow_ranked(space, ranking, limit)
    assert len(grown) == 43 and grown == ranking[:43]
    assert all(grown_space.layers[i][j].ffn_width == 264 for i, j in grown)
    # 14,361,744 + 43 BERT increments of 1057 * 132 / 12 = 11,627 each
    assert elm_space.mean_params(space) == 14_361_744
    assert elm_space.mean_params(grown_space) == 14_861_705 <= space.param_budget
