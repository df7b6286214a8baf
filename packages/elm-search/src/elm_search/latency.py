"""Latency prediction from a table of measured per-block latencies.

Measuring every candidate architecture on the target device is far too slow for a search that
visits thousands, but a transformer's latency is close to additive over its blocks. So a
device is measured once per distinct block (elm-eval's job), the numbers are kept as data
(JSON), and an architecture's latency is predicted as the fixed costs (embedding, head) plus
one table entry per layer. How close to additive the device really is, is not assumed: the
predictor reports its error against architectures measured end to end.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Self

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from elm_search.ranking import kendall_tau
from elm_space import Architecture, BlockKind, LayerChoice, SearchSpace

BlockKey = tuple[str, int, int, int | None]
"""(kind, ffn_width, heads, inner_size): what determines a block's cost at a fixed hidden size."""


class LatencyTableError(ValueError):
    """A latency table that is malformed, unreadable, or lacks a block an architecture uses."""


class BlockLatency(BaseModel):
    """The measured latency of one block shape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: BlockKind
    ffn_width: PositiveInt
    heads: PositiveInt
    inner_size: PositiveInt | None = None
    ms: NonNegativeFloat

    @model_validator(mode="after")
    def _inner_matches_kind(self) -> Self:
        if self.kind is BlockKind.MOBILE and self.inner_size is None:
            raise ValueError("inner_size is required for a 'mobile' block")
        if self.kind is BlockKind.BERT and self.inner_size is not None:
            raise ValueError(f"inner_size={self.inner_size} is only meaningful for a 'mobile' block")
        return self

    @property
    def key(self) -> BlockKey:
        return (self.kind.value, self.ffn_width, self.heads, self.inner_size)


def block_key(choice: LayerChoice) -> BlockKey:
    """The table key of a layer choice; the candidate index does not matter, only the shape."""
    return (choice.kind.value, choice.ffn_width, choice.heads, choice.inner_size)


def _describe(key: BlockKey) -> str:
    kind, width, heads, inner = key
    return f"{kind} block (ffn_width={width}, heads={heads}" + (f", inner_size={inner})" if inner else ")")


class LatencyTable(BaseModel):
    """Measured latencies, valid only for the setting they were measured in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_size: PositiveInt
    batch_size: PositiveInt
    seq_len: PositiveInt
    device: str = Field(min_length=1)
    """Free text naming the hardware and runtime, e.g. ``cpu-2core-torch2.13-fp32``."""
    embedding_ms: NonNegativeFloat
    head_ms: NonNegativeFloat = 0.0
    blocks: tuple[BlockLatency, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_blocks(self) -> Self:
        seen: set[BlockKey] = set()
        for i, block in enumerate(self.blocks):
            if block.key in seen:
                raise ValueError(f"blocks[{i}] measures the {_describe(block.key)} a second time")
            seen.add(block.key)
        return self

    @cached_property
    def _by_key(self) -> dict[BlockKey, float]:
        return {b.key: b.ms for b in self.blocks}

    def lookup(self, choice: LayerChoice) -> float:
        ms = self._by_key.get(block_key(choice))
        if ms is not None:
            return ms
        raise LatencyTableError(
            f"latency table (device={self.device!r}, hidden_size={self.hidden_size}) has no entry for the "
            f"{_describe(block_key(choice))}"
        )

    def missing(self, space: SearchSpace) -> list[BlockKey]:
        """Block shapes the space offers that the table lacks (empty when it covers the space)."""
        known = {b.key for b in self.blocks}
        needed = {block_key(o) for i in range(space.num_layers) for o in space.options(i)}
        return sorted(needed - known, key=repr)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        try:
            return cls.model_validate_json(path.read_text())
        except OSError as err:
            raise LatencyTableError(f"cannot read latency table {path}: {err}") from err
        except ValidationError as err:
            raise LatencyTableError(f"latency table {path} is not valid:\n{err}") from err


class PredictorReport(BaseModel):
    """How well the additive prediction matches end-to-end measurements."""

    model_config = ConfigDict(frozen=True)

    n: int
    mape: float
    """Mean absolute percentage error, in percent."""
    max_abs_error_ms: float
    max_rel_error: float
    """Largest |predicted - measured| / measured, as a fraction."""
    kendall_tau: float | None
    """Rank agreement, which is what a search actually relies on; None with fewer than 2 distinct values."""


class LatencyPredictor(BaseModel):
    """Additive latency prediction: fixed costs plus one table entry per layer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: LatencyTable

    @classmethod
    def from_json(cls, path: str | Path) -> LatencyPredictor:
        return cls(table=LatencyTable.load(path))

    def _check_hidden(self, hidden_size: int) -> None:
        if hidden_size != self.table.hidden_size:
            raise LatencyTableError(
                f"latency table was measured at hidden_size={self.table.hidden_size}, "
                f"but the architecture has hidden_size={hidden_size}"
            )

    def fixed_ms(self) -> float:
        return self.table.embedding_ms + self.table.head_ms

    def layer_ms(self, choice: LayerChoice, hidden_size: int) -> float:
        self._check_hidden(hidden_size)
        return self.table.lookup(choice)

    def predict(self, arch: Architecture) -> float:
        """Predicted latency in milliseconds for the table's batch size and sequence length."""
        self._check_hidden(arch.backbone.hidden_size)
        return self.fixed_ms() + sum(self.table.lookup(c) for c in arch.layers)

    def check_covers(self, space: SearchSpace) -> None:
        """Fail before a search starts, rather than in generation 7, if a block was never measured."""
        self._check_hidden(space.backbone.hidden_size)
        missing = self.table.missing(space)
        if missing:
            listed = "; ".join(_describe(k) for k in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise LatencyTableError(
                f"latency table (device={self.table.device!r}) lacks {len(missing)} block shape(s) of space "
                f"{space.name!r}: {listed}{more}"
            )

    def report(self, measured: Sequence[tuple[Architecture, float]]) -> PredictorReport:
        """Error of the prediction against held-out (architecture, measured ms) pairs."""
        if not measured:
            raise ValueError("report needs at least one (architecture, measured latency) pair")
        truth = np.array([float(ms) for _, ms in measured], dtype=np.float64)
        if np.any(truth <= 0) or not np.all(np.isfinite(truth)):
            raise ValueError("measured latencies must be positive finite numbers")
        pred = np.array([self.predict(arch) for arch, _ in measured], dtype=np.float64)
        abs_err = np.abs(pred - truth)
        rel_err = abs_err / truth
        tau = None
        if len(set(truth.tolist())) > 1 and len(set(pred.tolist())) > 1:
            tau = kendall_tau(pred.tolist(), truth.tolist())
        return PredictorReport(
            n=len(measured),
            mape=float(100.0 * rel_err.mean()),
            max_abs_error_ms=float(abs_err.max()),
            max_rel_error=float(rel_err.max()),
            kendall_tau=tau,
        )
