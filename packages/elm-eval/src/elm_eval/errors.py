"""The one exception type elm-eval raises for bad input, and one-line error formatting.

Callers (and the CLI) catch a single type and show its message as is, so every message names the
file (and line), column, field, option or split at fault and what was wrong with it, on one line.
Low-level errors (a file that is not UTF-8, a CSV field over the size limit, a JSON-lines row without
a key, a model directory transformers cannot load) become an ElmEvalError where the file is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import ValidationError


class ElmEvalError(ValueError):
    """Bad input to an evaluator: a missing file, an unknown column, mismatched labels, no data."""


def one_line(text: object, limit: int = 400) -> str:
    """``text`` with line breaks folded into spaces, cut to ``limit`` characters."""
    folded = re.sub(r"\s*\n\s*", " ", str(text)).strip()
    return folded if len(folded) <= limit else folded[: limit - 3] + "..."


def _location(loc: tuple[int | str, ...], names: Mapping[str, str]) -> str:
    if loc and isinstance(loc[0], str) and loc[0] in names:
        head, rest = names[loc[0]], loc[1:]
    else:
        head, rest = "", loc
    for part in rest:
        head += f"[{part}]" if isinstance(part, int) else (f".{part}" if head else str(part))
    return head


def describe_validation_error(
    err: ValidationError, names: Mapping[str, str] | None = None, limit: int = 3
) -> str:
    """pydantic's errors as one line, ``field.path: what is wrong (got value)`` joined by ``; ``.

    ``names`` renames top-level fields (the CLI maps config fields to its option names).
    """
    parts = []
    for item in err.errors(include_url=False)[:limit]:
        msg = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        where = _location(tuple(item.get("loc", ())), names or {})
        shown = repr(item.get("input"))
        got = f" (got {shown})" if where and len(shown) <= 60 and item.get("type") != "missing" else ""
        parts.append(f"{where}: {msg}{got}" if where else msg)
    more = err.error_count() - limit
    return one_line("; ".join(parts) + (f"; and {more} more" if more > 0 else ""))
