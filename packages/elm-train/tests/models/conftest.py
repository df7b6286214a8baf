"""Shared fixtures for the model tests: the tiny spaces, sampled architectures, inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import elm_space
from elm_space import Architecture, BlockKind, LayerChoice, SearchSpace

SPACES: dict[str, SearchSpace] = {
    "tiny": elm_space.preset("tiny"),
    "tiny_factorized": elm_space.preset("tiny-factorized"),
    "tiny_causal": elm_space.preset("tiny", family="causal", type_vocab_size=0),
    "tiny_factorized_causal": elm_space.preset("tiny-factorized", family="causal", type_vocab_size=0),
}
ARCHS_PER_SPACE = 6


def sampled_architectures() -> list[tuple[str, Architecture]]:
    """Six architectures per tiny space (24 in all), with fixed seeds."""
    return [
        (name, arch)
        for name, space in SPACES.items()
        for arch in elm_space.sample_many(space, ARCHS_PER_SPACE, seed=7)
    ]


def uniform_architecture(space: SearchSpace, kind: BlockKind, heads: int) -> Architecture:
    """Every layer picks the first candidate of ``kind`` with ``heads`` heads."""
    candidates = space.layers[0]
    index = next(j for j, c in enumerate(candidates) if c.kind is kind)
    spec = candidates[index]
    choice = LayerChoice(
        candidate=index, kind=kind, ffn_width=spec.ffn_width, heads=heads, inner_size=spec.inner_size
    )
    return space.architecture([choice] * space.num_layers)


def perturb(module: nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Add noise to every parameter, so that unit norms and zero biases cannot hide a mapping error."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    """Three sequences of 9 tokens, the second padded after 6."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 100, (3, 9), generator=generator)
    attention_mask = torch.ones(3, 9, dtype=torch.long)
    attention_mask[1, 6:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests asking for ``sampled_arch`` run once per sampled (space name, architecture)."""
    if "sampled_arch" in metafunc.fixturenames:
        cases = sampled_architectures()
        metafunc.parametrize("sampled_arch", cases, ids=[f"{name}-{arch}" for name, arch in cases])


@pytest.fixture(scope="session")
def spaces() -> dict[str, SearchSpace]:
    return SPACES


@pytest.fixture
def all_sampled() -> list[tuple[str, Architecture]]:
    return sampled_architectures()


@pytest.fixture(name="perturb", scope="session")
def perturb_fixture():
    return perturb


@pytest.fixture(name="uniform_architecture")
def uniform_architecture_fixture():
    return uniform_architecture
