"""The hand-designed baseline when growth left no BERT width common to every layer."""

import torch

import elm_space
from elm_space import BlockKind, SearchSpace
from elm_train.models import ElmSupernet
from elm_train.training.retraining import baseline_architecture, narrowed_space


def _grown(widths: list[tuple[int, int]]) -> SearchSpace:
    """``tiny`` with its two BERT candidates per layer at the given widths (initially 32 and 64)."""
    space = elm_space.preset("tiny")
    layers = []
    for layer, (first, second) in zip(space.layers, widths, strict=True):
        cands = list(layer)
        cands[0] = cands[0].model_copy(update={"ffn_width": first})
        cands[1] = cands[1].model_copy(update={"ffn_width": second})
        layers.append(tuple(cands))
    return space.model_copy(update={"layers": tuple(layers)})


def test_baseline_cuts_the_narrowest_wide_enough_candidate():
    grown = _grown([(64, 96), (32, 64), (32, 96)])  # BERT widths {64, 96}, {32, 64}, {32, 96}: none common
    arch = baseline_architecture(grown, budget=10**9)
    assert [(c.candidate, c.ffn_width, c.heads) for c in arch.layers] == [(0, 64, 4), (1, 64, 4), (1, 64, 4)]
    assert {c.kind for c in arch.layers} == {BlockKind.BERT}
    small = baseline_architecture(grown, budget=elm_space.count_params(arch) - 1)
    assert [(c.candidate, c.ffn_width) for c in small.layers] == [(0, 32), (0, 32), (0, 32)]


def test_a_cut_candidate_is_extracted_with_its_leading_weights():
    grown = _grown([(64, 96), (32, 64), (32, 96)])
    arch = baseline_architecture(grown, budget=10**9)
    torch.manual_seed(0)
    supernet = ElmSupernet(grown)
    supernet.space = narrowed_space(grown, arch.layers)
    model = supernet.extract(arch)
    assert sum(p.numel() for p in model.parameters()) == elm_space.count_params(arch)
    block = supernet.layers[2][1]  # grown to 96, read at 64
    torch.testing.assert_close(model.layers[2].ffn.dense1.weight, block.ffn.dense1.weight[:64])
    torch.testing.assert_close(model.layers[2].ffn.dense2.weight, block.ffn.dense2.weight[:, :64])


def test_common_widths_are_used_as_they_are():
    space = elm_space.preset("tiny")
    arch = baseline_architecture(space, budget=10**9)
    assert [(c.candidate, c.ffn_width) for c in arch.layers] == [(1, 64)] * 3
    space.check(arch)  # a path of the space itself: nothing was cut
