"""What every section of the run config shares: the error type, the strict frozen base model, and
the check that a named loss is registered."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from elm_distill import LOSSES
from elm_train.runtime.errors import ElmTrainError


class ConfigError(ElmTrainError):
    """A config that cannot run, with the field and the reason."""


class Section(BaseModel):
    """A config section: unknown fields are refused (a typo must not pass silently), and values
    cannot change after validation (every stage reads the config the run was started with).

    A mutable default (``[]``, ``{}``) is safe on a field: pydantic copies it for every instance.
    Ruff's RUF012 cannot see across modules that a subclass of this is a pydantic model
    (astral-sh/ruff#13630), hence the ``noqa: RUF012`` on such fields in the section modules."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def registered_loss(name: str) -> str:
    """``name`` itself, if elm-distill's registry has a loss of that name (a field validator)."""
    if name not in LOSSES:
        raise ValueError(
            f"no loss named {name!r} is registered; registered: {', '.join(LOSSES.names())} "
            "(a plugin module listed under plugins: can add one with elm_distill.register_loss)"
        )
    return name
