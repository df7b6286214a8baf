"""One process per run directory: a second process is refused, naming the holder."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from elm_train.runtime.errors import ElmTrainError
from elm_train.runtime.lock import LOCK_FILE, RunLock, RunLockedError, read_holder

TRY_LOCK = """
import sys
from elm_train.runtime.lock import RunLock, RunLockedError
try:
    with RunLock(sys.argv[1]):
        print("acquired")
except RunLockedError as e:
    print("refused:", e)
    sys.exit(3)
"""

HOLD_LOCK = """
import sys, time
from elm_train.runtime.lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(60)
"""


def _try(run_dir):
    return subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(run_dir)], capture_output=True, text=True, timeout=60
    )


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    with RunLock(run_dir) as lock:
        assert lock.held
        holder = json.loads((run_dir / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert read_holder(run_dir) == holder
        second = _try(run_dir)
        assert second.returncode == 3, second.stderr
        assert f"process {os.getpid()} on host {socket.gethostname()}" in second.stdout
        assert str(run_dir) in second.stdout and holder["started"] in second.stdout
        with pytest.raises(RunLockedError, match=str(os.getpid())) as info:  # in-process too
            RunLock(run_dir).acquire()
        assert isinstance(info.value, ElmTrainError) and info.value.holder["pid"] == os.getpid()
    assert not lock.held
    after = _try(run_dir)  # released on exit
    assert after.returncode == 0 and "acquired" in after.stdout, after.stdout + after.stderr


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"process {holder.pid} "):
            RunLock(run_dir).acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the lock with the process
        try:
            lock = RunLock(run_dir).acquire()
            break
        except RunLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert read_holder(run_dir)["pid"] == os.getpid()
    lock.release()
    assert read_holder(run_dir) == {}
