"""The one exception type elm-eval raises for bad input.

Callers (and the CLI) catch a single type and show its message as is, so every message names the
file, column, field or split at fault and what was wrong with it.
"""


class ElmEvalError(ValueError):
    """Bad input to an evaluator: a missing file, an unknown column, mismatched labels, no data."""
