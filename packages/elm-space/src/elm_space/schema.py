"""The search-space schema: what a space allows and what one architecture picks.

Everything here is immutable data. A space is grown by building a new one, an architecture is
changed by building a new one, so a value that was hashed, cached or written to disk never
changes under the reader's feet.
"""

from __future__ import annotations

import hashlib
import json
import operator
from enum import StrEnum
from typing import Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import to_jsonable_python


class SpaceError(ValueError):
    """The one error type of elm-space: an architecture or an operation that does not fit its search
    space, or a file that does not hold one. Its message is one line that names the field or file.

    Constructing a schema model directly (``Backbone(...)``, ``Architecture(...)``) raises pydantic's
    ``ValidationError`` as usual; every function and method of the package raises ``SpaceError``.
    """


class SpaceFileNotFoundError(SpaceError, FileNotFoundError):
    """A space or architecture file that does not exist (both a SpaceError and a FileNotFoundError)."""


class UnknownPresetError(SpaceError, KeyError):
    """An unknown preset name (both a SpaceError and a KeyError)."""

    __str__ = ValueError.__str__  # KeyError would quote the message


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_validation_error(err: ValidationError, limit: int = 3) -> str:
    """pydantic's error list as one line: ``field.path: what is wrong (got value)``, ``; ``-joined."""
    parts = []
    for item in err.errors(include_url=False)[:limit]:
        msg = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        where = _location(tuple(item.get("loc", ())))
        shown = repr(item.get("input"))
        got = f" (got {shown})" if where and len(shown) <= 60 and item.get("type") != "missing" else ""
        parts.append(f"{where}: {msg}{got}" if where else msg)
    more = err.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


M = TypeVar("M", bound=BaseModel)


def revalidated(model: M, where: str, **updates: Any) -> M:
    """``model`` with ``updates`` applied, validated like a new model (``model_copy(update=...)``
    skips validation, so every copy-with-changes in elm-space goes through here).

    Raises SpaceError naming ``where`` and the field.
    """
    data = model.model_dump()
    data.update(to_jsonable_python(updates))
    try:
        return type(model).model_validate(data)
    except ValidationError as err:
        raise SpaceError(f"{where}: {describe_validation_error(err)}") from None


def as_int(value: Any, what: str) -> int:
    """``value`` as a plain int (numpy and torch integers too; not bool or float), or SpaceError."""
    if isinstance(value, bool):
        raise SpaceError(f"{what}={value!r} is not an int")
    try:
        return operator.index(value)
    except TypeError:
        raise SpaceError(f"{what}={value!r} is not an int") from None


class BlockKind(StrEnum):
    """The two block families of the ELM supernet (METHOD.md section 1)."""

    BERT = "bert"
    """Post-LN BERT block: full-width attention, GELU FFN, LayerNorm."""
    MOBILE = "mobile"
    """MobileBERT-style bottleneck block: attention and a ReLU FFN inside an inner size, NoNorm."""


class Family(StrEnum):
    """Whether the model is trained and used as a masked (BERT-like) or causal (GPT-like) LM."""

    MASKED = "masked"
    CAUSAL = "causal"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EmbeddingSpec(_Frozen):
    """Token embedding: a plain H-wide table, or MobileBERT's factorised one.

    The factorised embedding keeps an E-wide table (E much smaller than H, which matters when
    the vocabulary is 30k tokens) and maps the concatenated embeddings of three neighbouring
    tokens (3E) to H with one linear layer.
    """

    kind: Literal["plain", "factorized"] = "plain"
    size: PositiveInt | None = None
    """E, the table width; required for ``factorized``, absent for ``plain``."""

    @model_validator(mode="after")
    def _size_matches_kind(self) -> Self:
        if self.kind == "factorized" and self.size is None:
            raise ValueError("embedding.size is required when embedding.kind is 'factorized'")
        if self.kind == "plain" and self.size is not None:
            raise ValueError(
                f"embedding.size={self.size} is only meaningful for kind 'factorized' "
                "(a plain embedding is hidden_size wide)"
            )
        return self


class Backbone(_Frozen):
    """What every layer and candidate of a space shares."""

    family: Family = Family.MASKED
    hidden_size: PositiveInt
    vocab_size: PositiveInt
    max_positions: PositiveInt = 512
    type_vocab_size: int = Field(default=2, ge=0)
    """Segment embeddings (BERT's sentence A/B); 0 for models without them (the causal family)."""
    embedding: EmbeddingSpec = EmbeddingSpec()

    @property
    def embedding_width(self) -> int:
        """Width of the token table, which a tied LM decoder shares."""
        return self.embedding.size if self.embedding.kind == "factorized" else self.hidden_size


def _show(value: object) -> str:
    return repr(value.value) if isinstance(value, BlockKind) else repr(value)


def _attention_width(kind: BlockKind, hidden_size: int, inner_size: int | None) -> int:
    return hidden_size if kind is BlockKind.BERT else int(inner_size or 0)


def _check_kind_fields(kind: BlockKind, inner_size: int | None, where: str) -> None:
    if kind is BlockKind.MOBILE and inner_size is None:
        raise ValueError(f"{where}: inner_size is required for a 'mobile' block")
    if kind is BlockKind.BERT and inner_size is not None:
        raise ValueError(f"{where}: inner_size={inner_size} is only meaningful for a 'mobile' block")


class CandidateSpec(_Frozen):
    """One candidate block of one layer, with its dynamic FFN width.

    ``ffn_width`` is the current width; the dynamic dimension grows it by ``increment`` up to
    ``max_ffn_width`` (METHOD.md section 2a). The supernet allocates weights at the maximum, so
    growth never reallocates.
    """

    kind: BlockKind
    ffn_width: PositiveInt
    max_ffn_width: PositiveInt
    increment: PositiveInt
    heads: tuple[PositiveInt, ...] = Field(min_length=1)
    """Head counts the search may pick; each must divide the attention width."""
    inner_size: PositiveInt | None = None
    """Bottleneck width of a mobile block (its attention and FFN work at this width)."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.ffn_width > self.max_ffn_width:
            raise ValueError(f"ffn_width={self.ffn_width} is above max_ffn_width={self.max_ffn_width}")
        if len(set(self.heads)) != len(self.heads):
            raise ValueError(f"heads={list(self.heads)} lists a head count twice")
        _check_kind_fields(self.kind, self.inner_size, "candidate")
        return self

    def attention_width(self, hidden_size: int) -> int:
        return _attention_width(self.kind, hidden_size, self.inner_size)

    @property
    def can_grow(self) -> bool:
        return self.ffn_width + self.increment <= self.max_ffn_width


class LayerChoice(_Frozen):
    """What an architecture picks for one layer: a candidate block, its FFN width and heads."""

    candidate: int = Field(ge=0)
    """Index of the candidate in its layer; selects the supernet's weights for this block."""
    kind: BlockKind
    ffn_width: PositiveInt
    heads: PositiveInt
    inner_size: PositiveInt | None = None

    def attention_width(self, hidden_size: int) -> int:
        return _attention_width(self.kind, hidden_size, self.inner_size)

    def token(self) -> str:
        """Compact text form, e.g. ``3:B528h12`` or ``7:M132/264h4``."""
        body = f"B{self.ffn_width}" if self.kind is BlockKind.BERT else f"M{self.inner_size}/{self.ffn_width}"
        return f"{self.candidate}:{body}h{self.heads}"

    @classmethod
    def from_token(cls, token: str) -> LayerChoice:
        try:
            index, body = token.split(":")
            body, heads = body.rsplit("h", 1)
            if body.startswith("B"):
                return cls(
                    candidate=int(index), kind=BlockKind.BERT, ffn_width=int(body[1:]), heads=int(heads)
                )
            if body.startswith("M"):
                inner, width = body[1:].split("/")
                return cls(
                    candidate=int(index),
                    kind=BlockKind.MOBILE,
                    ffn_width=int(width),
                    heads=int(heads),
                    inner_size=int(inner),
                )
        except ValidationError as err:
            raise SpaceError(f"layer token {token!r}: {describe_validation_error(err)}") from None
        except (ValueError, AttributeError) as err:
            raise SpaceError(
                f"layer token {token!r} is not of the form 'I:B<width>h<heads>' or 'I:M<inner>/<width>h<heads>'"
            ) from err
        raise SpaceError(f"layer token {token!r}: unknown block kind {body[:1]!r} (expected 'B' or 'M')")


class Architecture(_Frozen):
    """One path through a space: everything needed to build a static model, and nothing else."""

    backbone: Backbone
    layers: tuple[LayerChoice, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        for i, layer in enumerate(self.layers):
            _check_kind_fields(layer.kind, layer.inner_size, f"layers[{i}]")
            width = layer.attention_width(self.backbone.hidden_size)
            if width % layer.heads:
                raise ValueError(
                    f"layers[{i}].heads={layer.heads} does not divide the attention width {width} of its {layer.kind.value} block"
                )
        return self

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def to_string(self) -> str:
        """Human-readable and parseable: layer tokens joined by ``|``."""
        return "|".join(layer.token() for layer in self.layers)

    @classmethod
    def from_string(cls, text: str, backbone: Backbone) -> Architecture:
        """Parse :meth:`to_string`'s form; SpaceError naming the token or layer otherwise."""
        if not isinstance(text, str):
            raise SpaceError(f"architecture string must be a str, got {type(text).__name__}")
        layers = tuple(LayerChoice.from_token(t) for t in text.strip().split("|"))
        try:
            return cls(backbone=backbone, layers=layers)
        except ValidationError as err:
            raise SpaceError(f"architecture {text.strip()!r}: {describe_validation_error(err)}") from None

    def stable_hash(self, length: int = 12) -> str:
        """Content hash for caches and file names: equal architectures hash equally everywhere."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:length]

    def with_heads(self, heads: list[int] | tuple[int, ...]) -> Architecture:
        """The same architecture with new head counts, as CKA head selection produces them.

        Head counts change only how the attention width is split, so the result may leave the
        space's listed head choices; it is still checked to divide each layer's width.
        """
        heads = list(heads)
        if len(heads) != len(self.layers):
            raise SpaceError(
                f"with_heads: heads has {len(heads)} entries but the architecture has {len(self.layers)} layers"
            )
        heads = [as_int(h, f"with_heads: heads[{i}]") for i, h in enumerate(heads)]
        layers = [layer.model_dump() | {"heads": h} for layer, h in zip(self.layers, heads, strict=True)]
        return revalidated(self, "with_heads", layers=layers)

    def __str__(self) -> str:
        return self.to_string()


class SearchSpace(_Frozen):
    """The candidates allowed per layer, with their current (growable) FFN widths."""

    name: str = "custom"
    backbone: Backbone
    layers: tuple[tuple[CandidateSpec, ...], ...] = Field(min_length=1)
    param_budget: PositiveInt | None = None
    """Parameter budget the dynamic dimension respects (growth stops when the mean sampled
    architecture would exceed it), and the default search constraint."""

    @field_validator("layers")
    @classmethod
    def _non_empty_layers(
        cls, layers: tuple[tuple[CandidateSpec, ...], ...]
    ) -> tuple[tuple[CandidateSpec, ...], ...]:
        for i, layer in enumerate(layers):
            if not layer:
                raise ValueError(f"layers[{i}] has no candidates")
        return layers

    @model_validator(mode="after")
    def _heads_divide(self) -> Self:
        for i, layer in enumerate(self.layers):
            for j, cand in enumerate(layer):
                width = cand.attention_width(self.backbone.hidden_size)
                for h in cand.heads:
                    if width % h:
                        raise ValueError(
                            f"layers[{i}][{j}].heads contains {h}, which does not divide the attention width {width} "
                            f"of its {cand.kind.value} block"
                        )
        return self

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def layer_index(self, layer: Any) -> int:
        """``layer`` checked as an index of this space's layers (SpaceError otherwise; no negatives)."""
        index = as_int(layer, "layer")
        if not 0 <= index < len(self.layers):
            raise SpaceError(
                f"layer {index} is not in space {self.name!r} (layers 0..{len(self.layers) - 1})"
            )
        return index

    def options(self, layer: int) -> list[LayerChoice]:
        """Every (candidate, heads) pick of one layer, in a fixed order search can index."""
        return [
            LayerChoice(candidate=j, kind=c.kind, ffn_width=c.ffn_width, heads=h, inner_size=c.inner_size)
            for j, c in enumerate(self.layers[self.layer_index(layer)])
            for h in c.heads
        ]

    def architecture(self, choices: list[LayerChoice] | tuple[LayerChoice, ...]) -> Architecture:
        """The architecture of ``choices`` (one per layer), checked against this space (SpaceError)."""
        try:
            arch = Architecture.model_validate(
                {"backbone": self.backbone.model_dump(), "layers": to_jsonable_python(list(choices))}
            )
        except ValidationError as err:
            raise SpaceError(f"architecture: {describe_validation_error(err)}") from None
        self.check(arch)
        return arch

    def check(self, arch: Architecture) -> None:
        """Raise SpaceError naming the first layer whose choice this space does not offer."""
        if arch.backbone != self.backbone:
            raise SpaceError(
                f"architecture backbone {arch.backbone!r} differs from the space's {self.backbone!r}"
            )
        if len(arch.layers) != len(self.layers):
            raise SpaceError(
                f"architecture has {len(arch.layers)} layers but space {self.name!r} has {len(self.layers)}"
            )
        for i, (choice, cands) in enumerate(zip(arch.layers, self.layers, strict=True)):
            if choice.candidate >= len(cands):
                raise SpaceError(
                    f"layers[{i}].candidate={choice.candidate} is not in the space (layer {i} has candidates 0..{len(cands) - 1})"
                )
            cand = cands[choice.candidate]
            for field in ("kind", "ffn_width", "inner_size"):
                mine, theirs = getattr(choice, field), getattr(cand, field)
                if mine != theirs:
                    raise SpaceError(
                        f"layers[{i}].{field}={_show(mine)} does not match candidate {choice.candidate} "
                        f"of the space ({field}={_show(theirs)})"
                    )
            if choice.heads not in cand.heads:
                raise SpaceError(
                    f"layers[{i}].heads={choice.heads} is not among candidate {choice.candidate}'s head counts {list(cand.heads)}"
                )

    def contains(self, arch: Architecture) -> bool:
        try:
            self.check(arch)
        except SpaceError:
            return False
        return True

    def size(self) -> int:
        """Number of distinct architectures: the product over layers of (candidate, heads) picks."""
        total = 1
        for layer in self.layers:
            total *= sum(len(c.heads) for c in layer)
        return total
