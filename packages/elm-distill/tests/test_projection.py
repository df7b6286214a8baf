"""Width projections: one learned map per student width, identity when widths agree."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from elm_distill import WidthProjection


def test_picks_the_map_for_each_width(generator) -> None:
    projection = WidthProjection([8, 4], teacher_width=12)
    wide = torch.randn(2, 3, 8, generator=generator)
    narrow = torch.randn(2, 3, 4, generator=generator)
    for x in (wide, narrow):
        linear = projection.maps[str(x.shape[-1])]
        assert isinstance(linear, nn.Linear)
        assert torch.equal(projection(x), x @ linear.weight.T + linear.bias)
        assert projection(x).shape == (2, 3, 12)
    assert projection.student_widths == [4, 8]


def test_initialisation_is_bert_style() -> None:
    projection = WidthProjection(256, teacher_width=512)
    linear = projection.maps["256"]
    assert torch.count_nonzero(linear.bias) == 0
    assert linear.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_equal_width_passes_through_unless_asked_to_learn(generator) -> None:
    x = torch.randn(2, 3, 6, generator=generator)
    assert torch.equal(WidthProjection(6, 6)(x), x)
    assert sum(p.numel() for p in WidthProjection(6, 6).parameters()) == 0
    assert sum(p.numel() for p in WidthProjection(6, 6, learn_when_equal=True).parameters()) == 6 * 6 + 6


def test_unknown_width_is_an_error() -> None:
    with pytest.raises(ValueError, match="no projection for student width 5"):
        WidthProjection([8, 4], 12)(torch.randn(1, 2, 5))


@pytest.mark.parametrize(("widths", "teacher"), [([], 4), ([0], 4), ([3], -1)])
def test_bad_widths_rejected(widths, teacher) -> None:
    with pytest.raises(ValueError, match="width"):
        WidthProjection(widths, teacher)
