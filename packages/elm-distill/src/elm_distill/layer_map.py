"""Which teacher layer each student layer learns from.

A student with L_s layers distilled from a teacher with L_t = r·L_s layers takes one teacher layer
per group of r. ELM's pretraining and final fine-tuning take the group's last layer, its search
fine-tuning the group's first (METHOD.md section 3); an explicit list covers everything else.
Indices are 0-based layer outputs (``hidden_states[i + 1]`` in Hugging Face terms); the
embedding output is always paired with the embedding output and is not part of the map.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum


class LayerMapKind(StrEnum):
    UNIFORM_LAST = "uniform_last"
    """Student layer l <- teacher layer (l+1)·r − 1: the last layer of each group."""
    UNIFORM_FIRST = "uniform_first"
    """Student layer l <- teacher layer l·r: the first layer of each group."""
    EXPLICIT = "explicit"
    """Student layer l <- teacher_layers[l]."""


class LayerMapError(ValueError):
    """A layer map that cannot be built for the given layer counts."""


def build_layer_map(
    num_student_layers: int,
    num_teacher_layers: int,
    kind: LayerMapKind | str = LayerMapKind.UNIFORM_LAST,
    teacher_layers: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """Pairs ``(student_layer, teacher_layer)``, one per student layer, in student order."""
    kind = LayerMapKind(kind)
    if num_student_layers < 1 or num_teacher_layers < 1:
        raise LayerMapError(
            f"layer counts must be >= 1, got {num_student_layers} student and {num_teacher_layers} teacher"
        )
    if kind is LayerMapKind.EXPLICIT:
        return _explicit(num_student_layers, num_teacher_layers, teacher_layers)
    if teacher_layers is not None:
        raise LayerMapError(f"teacher_layers is only used with kind 'explicit', not {kind.value!r}")
    if num_teacher_layers % num_student_layers:
        raise LayerMapError(
            f"a uniform map needs the teacher's {num_teacher_layers} layers to split evenly into the "
            f"student's {num_student_layers}; give an explicit teacher_layers list instead"
        )
    ratio = num_teacher_layers // num_student_layers
    offset = ratio - 1 if kind is LayerMapKind.UNIFORM_LAST else 0
    return [(layer, layer * ratio + offset) for layer in range(num_student_layers)]


def _explicit(
    num_student_layers: int, num_teacher_layers: int, teacher_layers: Sequence[int] | None
) -> list[tuple[int, int]]:
    if teacher_layers is None:
        raise LayerMapError("kind 'explicit' needs teacher_layers: one teacher layer per student layer")
    if len(teacher_layers) != num_student_layers:
        raise LayerMapError(
            f"teacher_layers has {len(teacher_layers)} entries but the student has {num_student_layers} layers"
        )
    for student_layer, teacher_layer in enumerate(teacher_layers):
        if not 0 <= teacher_layer < num_teacher_layers:
            raise LayerMapError(
                f"teacher_layers[{student_layer}] = {teacher_layer} is outside the teacher's layers "
                f"0..{num_teacher_layers - 1}"
            )
    return list(enumerate(teacher_layers))
