"""The errors elm-train raises for bad input: the one base class, and the runtime's own kinds.

The ``elm-train`` command catches this class (and pydantic's ValidationError, and
``ElmModelError`` of the model files, which travel with exported weights and so cannot import
this module) and prints the message on one line; anything else is a bug in the toolkit and keeps
its traceback. A plain ValueError or RuntimeError raised by elm-train's own code means such a bug.
"""


class ElmTrainError(ValueError):
    """A config, file, corpus, teacher or run directory that cannot be used, named with the reason."""


class CheckpointError(ElmTrainError):
    """A checkpoint cannot be written or restored (the message says which and why)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file would execute code if loaded; it was refused and nothing of it ran."""
