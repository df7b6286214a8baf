"""Learned projections from student width to teacher width.

A student narrower than its teacher cannot be compared feature-by-feature, so a linear map
(trained with the student, thrown away afterwards) lifts its features to the teacher's width.
ELM's supernet mixes widths inside one model (528-d BERT blocks, 132-d MobileBERT attention
bottlenecks), so one :class:`WidthProjection` holds a separate map per student width and picks
the one matching each input's last dim, like the reference's ``fit_dense_attn[0]``/``[1]``.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

INIT_STD = 0.02
"""Weights start as N(0, 0.02), biases at 0: the BERT initialisation the students themselves use."""


class WidthProjection(nn.Module):
    """Maps ``[..., w]`` to ``[..., teacher_width]`` for each registered student width ``w``.

    A student width equal to the teacher's passes through unchanged (no parameters) unless
    ``learn_when_equal`` is set. An input of an unregistered width is an error, never a silent
    pass-through.
    """

    def __init__(
        self,
        student_widths: int | Iterable[int],
        teacher_width: int,
        bias: bool = True,
        learn_when_equal: bool = False,
    ) -> None:
        super().__init__()
        widths = [student_widths] if isinstance(student_widths, int) else list(student_widths)
        if not widths:
            raise ValueError("student_widths is empty: give at least one student width")
        for width in [*widths, teacher_width]:
            if not isinstance(width, int) or width < 1:
                raise ValueError(f"widths must be positive integers, got {width!r}")
        self.teacher_width = teacher_width
        self.maps = nn.ModuleDict()
        for width in sorted(set(widths)):
            if width == teacher_width and not learn_when_equal:
                self.maps[str(width)] = nn.Identity()
                continue
            linear = nn.Linear(width, teacher_width, bias=bias)
            nn.init.normal_(linear.weight, std=INIT_STD)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
            self.maps[str(width)] = linear

    @property
    def student_widths(self) -> list[int]:
        return sorted(int(key) for key in self.maps)

    def forward(self, features: Tensor) -> Tensor:
        key = str(features.shape[-1])
        if key not in self.maps:
            raise ValueError(
                f"no projection for student width {features.shape[-1]}; this projection maps "
                f"widths {self.student_widths} to {self.teacher_width}"
            )
        return self.maps[key](features)
