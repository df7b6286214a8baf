"""The registry, and the contract every built-in loss keeps: scalar out, padding ignored,
finite gradients, bf16 inputs computed in float32."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from elm_distill import LOSSES, QKV, LossRegistry, get_loss

BUILT_IN = [
    "mse",
    "pearson",
    "attention_kl",
    "soft_ce",
    "kl",
    "logits_mse",
    "dist",
    "self_relation",
    "minilm",
]


def make_inputs(name: str, generator: torch.Generator) -> tuple[object, object]:
    """Float32 (student, teacher) inputs of the layout each loss takes, batch [3, 7]."""

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    if name in ("mse", "pearson"):
        return randn(3, 7, 5), randn(3, 7, 5)
    if name in ("soft_ce", "kl", "logits_mse", "dist"):
        return 2 * randn(3, 7, 6), 2 * randn(3, 7, 6)
    if name == "self_relation":
        return randn(3, 7, 8), randn(3, 7, 12)
    if name == "minilm":
        return QKV(randn(3, 7, 8), randn(3, 7, 8), randn(3, 7, 8)), QKV(
            randn(3, 7, 12), randn(3, 7, 12), randn(3, 7, 12)
        )
    if name == "attention_kl":
        return randn(3, 2, 7, 7).softmax(-1), randn(3, 2, 7, 7).softmax(-1)
    raise AssertionError(name)


def map_tensors(value: object, fn: Callable[[torch.Tensor], torch.Tensor]) -> object:
    return QKV(*(fn(part) for part in value)) if isinstance(value, QKV) else fn(value)


def params_for(name: str) -> dict[str, int]:
    return {"num_relation_heads": 4} if name in ("self_relation", "minilm") else {}


def student_leaves(value: object) -> list[torch.Tensor]:
    return list(value) if isinstance(value, QKV) else [value]


def test_built_ins_are_registered() -> None:
    assert sorted(BUILT_IN) == LOSSES.names()


@pytest.mark.parametrize("name", BUILT_IN)
def test_padding_never_counts(name, mask, generator) -> None:
    loss = get_loss(name)
    student, teacher = make_inputs(name, generator)
    before = loss(student, teacher, mask, **params_for(name))

    def scramble(tensor: torch.Tensor) -> torch.Tensor:
        noise = 1e3 * torch.randn(tensor.shape, generator=generator)
        if name == "attention_kl":  # [B, H, Tq, Tk]: both padded queries and padded keys
            padded = (mask == 0)[:, None, :, None] | (mask == 0)[:, None, None, :]
        else:
            padded = (mask == 0).reshape(*mask.shape, *([1] * (tensor.dim() - 2)))
        return torch.where(padded, noise, tensor)

    after = loss(map_tensors(student, scramble), map_tensors(teacher, scramble), mask, **params_for(name))
    assert before.dim() == 0
    assert after.item() == pytest.approx(before.item(), rel=1e-6)
    # ...while the same change without the mask must move the loss (the mask is doing the work).
    unmasked = loss(map_tensors(student, scramble), map_tensors(teacher, scramble), None, **params_for(name))
    assert unmasked.item() != pytest.approx(before.item(), rel=1e-3)


@pytest.mark.parametrize("name", BUILT_IN)
def test_gradients_are_finite(name, mask, generator) -> None:
    student, teacher = make_inputs(name, generator)
    student = map_tensors(student, lambda t: t.clone().requires_grad_())
    get_loss(name)(student, teacher, mask, **params_for(name)).backward()
    for leaf in student_leaves(student):
        assert leaf.grad is not None
        assert torch.isfinite(leaf.grad).all()
        assert torch.count_nonzero(leaf.grad) > 0


@pytest.mark.parametrize("name", BUILT_IN)
def test_bf16_inputs_are_computed_in_float32(name, mask, generator) -> None:
    loss = get_loss(name)
    student, teacher = make_inputs(name, generator)
    student_bf16 = map_tensors(student, lambda t: t.to(torch.bfloat16).requires_grad_())
    teacher_bf16 = map_tensors(teacher, lambda t: t.to(torch.bfloat16))
    value = loss(student_bf16, teacher_bf16, mask, **params_for(name))
    assert value.dtype == torch.float32
    # the same numbers in float32 give the same result: nothing was rounded to bf16 inside
    as_float = loss(
        map_tensors(student_bf16, lambda t: t.detach().float()),
        map_tensors(teacher_bf16, lambda t: t.float()),
        mask,
        **params_for(name),
    )
    assert value.item() == pytest.approx(as_float.item(), rel=1e-5, abs=1e-7)
    value.backward()
    for leaf in student_leaves(student_bf16):
        assert leaf.grad.dtype == torch.bfloat16
        assert torch.isfinite(leaf.grad.float()).all()


def test_register_get_and_unregister_a_custom_loss() -> None:
    registry = LossRegistry()

    @registry.register("l1")
    def l1(student, teacher, mask=None, scale: float = 1.0):
        return scale * (student - teacher).abs().mean()

    assert registry.get("l1") is l1
    assert registry.parameters("l1") == {"scale": 1.0}
    registry.check_params("l1", ["scale"])
    with pytest.raises(ValueError, match=r"takes no parameter\(s\) \['temperature'\]"):
        registry.check_params("l1", ["temperature"])
    with pytest.raises(ValueError, match="already registered"):
        registry.register("l1", l1)
    registry.register("l1", l1, overwrite=True)
    assert registry.unregister("l1") is l1
    with pytest.raises(KeyError, match="no loss named 'l1'"):
        registry.get("l1")


def test_signature_is_checked_on_registration() -> None:
    with pytest.raises(TypeError, match=r"must take \(student, teacher, mask, \.\.\.\) first"):
        LossRegistry().register("bad", lambda a, b: a)


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="registered: attention_kl, dist"):
        get_loss("tinybert")
