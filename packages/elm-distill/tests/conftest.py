"""Shared fixtures: a padded batch mask and a way to scramble what sits in its padding.

Helpers are handed out as fixtures because the root config imports test files with
--import-mode=importlib, where importing conftest as a module is not possible.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

LENGTHS = (7, 4, 1)
"""Real-token counts of the standard test batch: a full row, a padded one, a single token."""
TOKENS = 7


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def mask() -> torch.Tensor:
    """A Hugging Face style mask [3, 7]: 1 for each row's first LENGTHS[row] tokens, 0 after."""
    result = torch.zeros(len(LENGTHS), TOKENS, dtype=torch.long)
    for row, length in enumerate(LENGTHS):
        result[row, :length] = 1
    return result


@pytest.fixture
def scramble(generator: torch.Generator) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Replace every padded token's entries (mask dims lead the tensor) with large random values."""

    def apply(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        noise = 1e3 * torch.randn(tensor.shape, generator=generator, dtype=torch.float64).to(tensor.dtype)
        padded = (mask == 0).reshape(*mask.shape, *([1] * (tensor.dim() - mask.dim())))
        return torch.where(padded, noise, tensor)

    return apply
