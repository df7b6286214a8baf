"""The measured per-block latency table behind the search's latency budget.

elm-eval times modules; elm-search turns a table of block latencies into a predictor; this module
builds each distinct block shape of the space once, times it with elm-eval, and checks the
predictor against whole models measured the same way (its error goes into the run directory).
:func:`load_or_measure` keeps the table as a cache, so a resumed search does not measure again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

import elm_eval
import elm_space
from elm_search import BlockLatency, LatencyPredictor, LatencyTable, PredictorReport
from elm_space import SearchSpace
from elm_train.config import EvalStageConfig
from elm_train.models import ElmModel, elm_config
from elm_train.models.modeling_elm import ElmEmbeddings, make_block
from elm_train.runtime import fsio

HELD_OUT = 5
"""Whole architectures measured to report the predictor's error."""


class _BlockProbe(nn.Module):
    """One block at one (width, heads), callable on a hidden-state tensor alone."""

    def __init__(self, block: nn.Module, width: int, heads: int) -> None:
        super().__init__()
        self.block, self.width, self.heads = block, width, heads

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.block(
            hidden, None, ffn_width=self.width, heads=self.heads, eager=False, keep_context=False
        ).hidden


def measure_table(
    space: SearchSpace, batch: int, length: int, repeats: int, seed: int
) -> tuple[LatencyTable, PredictorReport]:
    """Time every block shape the space offers, and the table's predictor against
    :data:`HELD_OUT` whole sampled models timed the same way."""
    template = elm_config(elm_space.sample(space, 0))
    hidden = torch.randn(batch, length, space.backbone.hidden_size)
    ids = torch.randint(space.backbone.vocab_size, (batch, length))
    timing = {"repeats": repeats, "warmup": 3}
    seen: dict[tuple[Any, ...], BlockLatency] = {}
    for layer in range(space.num_layers):
        for option in space.options(layer):
            key = (option.kind, option.ffn_width, option.heads, option.inner_size)
            if key in seen:
                continue
            block = make_block(template, option.kind.value, option.inner_size, option.ffn_width)
            stats = elm_eval.measure_module_latency(
                _BlockProbe(block, option.ffn_width, option.heads), hidden, **timing
            )
            seen[key] = BlockLatency(
                kind=option.kind,
                ffn_width=option.ffn_width,
                heads=option.heads,
                inner_size=option.inner_size,
                ms=stats.median_ms,
            )
    embedding = elm_eval.measure_module_latency(ElmEmbeddings(template), ids, **timing)
    table = LatencyTable(
        hidden_size=space.backbone.hidden_size,
        batch_size=batch,
        seq_len=length,
        device=f"cpu-{torch.get_num_threads()}threads-torch{torch.__version__}",
        embedding_ms=embedding.median_ms,
        blocks=tuple(seen.values()),
    )
    measured = []
    for arch in elm_space.sample_many(space, HELD_OUT, seed):
        model = ElmModel(elm_config(arch))
        measured.append((arch, elm_eval.measure_module_latency(model, ids, **timing).median_ms))
    return table, LatencyPredictor(table=table).report(measured)


def load_or_measure(
    table_path: Path, report_path: Path, space: SearchSpace, settings: EvalStageConfig, seed: int
) -> LatencyTable:
    """The table at ``table_path``, or measured now (at ``settings``' batch, sequence length and
    repeats) and saved there, with the predictor's error in ``report_path``."""
    if table_path.is_file():
        return LatencyTable.load(table_path)
    table, report = measure_table(
        space, settings.latency_batch_size, settings.latency_seq_len, settings.latency_repeats, seed
    )
    # the table is the cache: written last and atomically, so a killed run never finds a torn one
    fsio.write_text_atomic(report_path, json.dumps(report.model_dump(), indent=2))
    fsio.write_text_atomic(table_path, table.model_dump_json(indent=2) + "\n")
    return table
