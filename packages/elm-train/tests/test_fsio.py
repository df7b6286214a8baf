"""Durable atomic writes: files and directories appear complete under their final name, or not at all."""

import json
import os
import subprocess
import sys

import pytest

from elm_train.runtime import checkpoint, fsio


def test_write_json_atomic_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "info.json"
    fsio.write_json_atomic(path, {"a": 1})
    fsio.write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["info.json"]
    assert checkpoint.write_json_atomic is fsio.write_json_atomic  # still importable from checkpoint


def test_atomic_directory_publishes_only_a_complete_directory(tmp_path):
    final = tmp_path / "model"
    with fsio.atomic_directory(final) as tmp:
        assert tmp != final and tmp.parent == final.parent
        (tmp / "weights.bin").write_bytes(b"new")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.txt").write_text("x")
        assert not final.exists()
    assert (final / "weights.bin").read_bytes() == b"new"
    assert (final / "sub" / "x.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_directory_replaces_an_old_one_and_keeps_it_on_failure(tmp_path):
    final = tmp_path / "model"
    with fsio.atomic_directory(final) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(RuntimeError, match="boom"), fsio.atomic_directory(final) as tmp:
        (tmp / "v").write_text("2")
        raise RuntimeError("boom")
    assert (final / "v").read_text() == "1"  # the failed attempt changed nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # and left nothing behind
    with fsio.atomic_directory(final) as tmp:
        (tmp / "w").write_text("3")
    assert sorted(p.name for p in final.iterdir()) == ["w"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_leftovers_of_a_killed_write_are_removed(tmp_path):
    (tmp_path / ".tmp-model").mkdir()
    (tmp_path / ".tmp-model" / "half").write_bytes(b"\0" * 10)
    (tmp_path / ".trash-old").mkdir()
    (tmp_path / "keep.txt").write_text("k")
    with fsio.atomic_directory(tmp_path / "model") as tmp:  # a stale temporary of its own is replaced
        assert not (tmp / "half").exists()
    removed = fsio.clean_temporaries(tmp_path)
    assert [p.name for p in removed] == [".trash-old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "model"]


def test_sha256_matches_hashlib(tmp_path):
    import hashlib

    data = os.urandom(3 * fsio.CHUNK + 17)
    (tmp_path / "f").write_bytes(data)
    assert fsio.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_a_plain_process_group_leaves_no_temporary_directory(tmp_path):
    """init_distributed used to leave an elm-dist-* file-store directory per process."""
    code = (
        "import torch; from elm_train.runtime import distributed as engine\n"
        "engine.init_distributed()\n"
        "assert torch.distributed.is_initialized() and engine.world_size() == 1\n"
        "assert engine.broadcast_object({'a': 1}) == {'a': 1} and engine.ranks_where(True) == [0]\n"
        "torch.distributed.barrier()\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(tmp_path.glob("elm-dist-*"))
