"""Reading input files and preparing output folders, with errors that name the file (and line).

Everything elm-eval reads from disk goes through :func:`read_text`, so a file in the wrong encoding
or a binary file gives ``FILE, line N: not utf-8 text ...`` rather than a UnicodeDecodeError; output
folders are checked with :func:`check_output_dir` before any work starts, so a run does not fine-tune
for an hour and then fail on ``--out`` naming an existing file.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from elm_eval.errors import ElmEvalError


def check_encoding(encoding: str) -> str:
    """The canonical name of ``encoding``; ValueError (for pydantic validators) when Python lacks it."""
    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError, ValueError):
        raise ValueError(f"unknown text encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)") from None


def read_text(path: Path, what: str, encoding: str = "utf-8", hint: str = "") -> str:
    """The text of ``path``; ElmEvalError naming the file (and the line of a byte that does not decode).

    ``what`` says what the file is for ("text file", "data file", ...); ``hint`` is added to an
    encoding error (how to declare another encoding).
    """
    if not path.exists():
        raise ElmEvalError(f"{path}: {what} not found")
    if not path.is_file():
        raise ElmEvalError(f"{path}: {what} is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ElmEvalError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        encoding = check_encoding(encoding)
    except ValueError as exc:
        raise ElmEvalError(f"{path}: {exc}") from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise ElmEvalError(
            f"{path}, line {line}: not {encoding} text (byte 0x{byte} at offset {exc.start}){hint}"
        ) from None


def check_output_dir(path: Path, what: str = "--out") -> Path:
    """Check before any work that ``path`` can be (or is) a folder to write into; return it."""
    if path.exists() and not path.is_dir():
        raise ElmEvalError(f"{what} {path}: exists and is not a folder")
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ElmEvalError(f"{what} {path}: {parent} is a file, so the folder cannot be made")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise ElmEvalError(f"{what} {path}: {parent} is not writable")
    return path


def make_output_dir(path: Path, what: str = "output folder") -> Path:
    """Create ``path`` (and parents); ElmEvalError naming it when that is impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ElmEvalError(f"{what} {path}: exists and is not a folder") from None
    except OSError as exc:
        raise ElmEvalError(f"{what} {path}: cannot create it: {exc.strerror or exc}") from None
    return path


def write_file(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path``; ElmEvalError naming the file when the write fails."""
    try:
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
    except OSError as exc:
        raise ElmEvalError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path
