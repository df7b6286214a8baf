"""Hidden-state losses that turn NaN, for the non-finite rows of the fault matrix.

``nan-after`` is plain MSE until it has been called ``ELM_TEST_NAN_FROM`` times (counted from the
last :func:`reset`), and NaN from then on: a run that diverges part-way through a stage.
``nan-in-eval`` is plain MSE while gradients are recorded and NaN without them: training is
finite, and every held-out evaluation (the search's fitness) is not.
"""

from __future__ import annotations

import os

import torch

import elm_distill

CALLS = 0


def reset() -> None:
    global CALLS
    CALLS = 0


def _mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return (student - teacher).pow(2).mean()


def nan_after_loss(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    global CALLS
    CALLS += 1
    start = os.environ.get("ELM_TEST_NAN_FROM")
    if start is not None and int(start) <= CALLS:
        return _mse(student, teacher) * float("nan")
    return _mse(student, teacher)


def nan_in_eval_loss(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    loss = _mse(student, teacher)
    return loss if torch.is_grad_enabled() else loss * float("nan")


elm_distill.register_loss("nan-after", nan_after_loss, overwrite=True)
elm_distill.register_loss("nan-in-eval", nan_in_eval_loss, overwrite=True)
