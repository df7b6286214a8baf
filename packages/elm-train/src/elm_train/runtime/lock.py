"""One process per run directory: an OS file lock held for the run's lifetime.

Two ``elm-train`` processes on the same run directory would interleave checkpoints, metrics and
stage outputs. :class:`RunLock` takes an exclusive ``fcntl.flock`` on ``<run_dir>/run.lock`` and
writes who holds it (pid, host, start time) into the file; a second process fails at once with
:class:`RunLockedError` naming the holder. The kernel drops the lock when the holder exits, however
it exits (a SIGKILL included), so a stale lock file never blocks a later run: only a live holder does.

Under a launcher (torchrun, the deepspeed launcher) the ranks of one run share its directory:
take the lock on rank 0 only. The lock file is never deleted (deleting it would let a second
process lock a fresh file while the first still holds the old one).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

from elm_train.runtime.errors import ElmTrainError

LOCK_FILE = "run.lock"


class RunLockedError(ElmTrainError):
    """The run directory is locked by another live process."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


class RunLock:
    """Exclusive lock on a run directory, as a context manager (or ``acquire``/``release``).

    ``path`` is the run directory (created if missing); the lock file is ``path / "run.lock"``.
    """

    def __init__(self, path: str | Path) -> None:
        self.dir = Path(path)
        self.file = self.dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            raise RuntimeError(f"{self.file} is already held by this RunLock")
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(_locked_message(self.dir, holder), holder) from None
        except BaseException:
            os.close(fd)
            raise
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale holder named once released
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def read_holder(path: str | Path) -> dict[str, Any]:
    """What the lock file of run directory ``path`` says about its holder ({} if nothing)."""
    try:
        fd = os.open(Path(path) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        holder = json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _locked_message(directory: Path, holder: dict[str, Any]) -> str:
    if holder:
        who = (
            f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"(started {holder.get('started', '?')})"
        )
    else:
        who = "another process (it has not written its pid yet)"
    return (
        f"run directory {directory} is in use by {who}; only one process may use a run directory "
        f"at a time. Wait for it to finish or stop it, or use another --run-dir."
    )
