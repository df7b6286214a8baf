"""Durable, atomic writes: a file or a directory appears complete under its final name, or not at all.

A rename publishes only what reached the disk before it: the data of a file written and renamed
without ``fsync`` can be lost in a power cut while the rename survives, leaving an empty or
partial file under the final name. Every helper here therefore fsyncs the new content, renames
it into place and then fsyncs the parent directory (which makes the rename itself durable).

Temporary names start with a dot and are fixed per target (``.tmp-<name>``), so that what a
killed process left behind is found and removed by the next attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from elm_train.runtime import faults

CHUNK = 1 << 20
"""Files are hashed in 1 MiB chunks."""

TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make the entries of ``path`` (files created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory; nothing more can be done there
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (directories after their contents)."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                fsync_file(path)
        fsync_dir(Path(dirpath))


def fsync_tree_dirs(root: Path) -> None:
    """fsync every directory under ``root``, deepest first (the files' own data is not synced)."""
    for dirpath, _dirnames, _filenames in os.walk(root, topdown=False):
        fsync_dir(Path(dirpath))


def sha256_file(path: Path, chunk: int = CHUNK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably: a temporary file, fsync, rename, fsync of the directory."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True))


def remove_tree(path: Path) -> None:
    """Remove a file or directory if it exists (a missing one is not an error)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def publish_directory(tmp: Path, final: Path) -> None:
    """Rename a complete, fsynced ``tmp`` directory to ``final``, replacing an existing one.

    A directory cannot replace a non-empty one by rename, so an old ``final`` is first moved
    aside to ``.trash-<name>`` and removed after the new one is in place; a crash in between
    leaves ``final`` missing for a moment (never half-written), and the trash is removed by
    :func:`clean_temporaries`.
    """
    trash = final.with_name(f"{TRASH_PREFIX}{final.name}")
    if final.exists():
        remove_tree(trash)
        os.rename(final, trash)
    os.rename(tmp, final)
    fsync_dir(final.parent)
    remove_tree(trash)


def clean_temporaries(directory: Path) -> list[Path]:
    """Remove what interrupted atomic writes left in ``directory``; returns what was removed."""
    removed = []
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
            remove_tree(entry)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Build a directory under a temporary name and publish it as ``final`` only when complete.

    Yields the temporary directory to write into. When the block ends normally, every file and
    directory in it is fsynced and it is renamed to ``final`` (replacing an existing ``final``);
    when the block raises, the temporary directory is removed and ``final`` is left untouched::

        with atomic_directory(out / "model") as tmp:
            model.save_pretrained(tmp)
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{TMP_PREFIX}{final.name}")
    remove_tree(tmp)  # left by a process killed while writing
    tmp.mkdir()
    try:
        yield tmp
        faults.maybe_crash("export", f"export/{final.parent.name}/{final.name}")
        fsync_tree(tmp)
        publish_directory(tmp, final)
    except BaseException:
        remove_tree(tmp)
        raise
