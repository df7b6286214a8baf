"""The one base class of the errors elm-train raises for bad input.

The ``elm-train`` command catches this class (and pydantic's ValidationError, and
``ElmModelError`` of the model files, which travel with exported weights and so cannot import
this module) and prints the message on one line; anything else is a bug in the toolkit and keeps
its traceback. A plain ValueError or RuntimeError raised by elm-train's own code means such a bug.
"""


class ElmTrainError(ValueError):
    """A config, file, corpus, teacher or run directory that cannot be used, named with the reason."""
