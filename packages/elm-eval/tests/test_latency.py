"""Latency grid structure, parameter counts, thread bookkeeping and the CPU peak-memory measure.

Timing values themselves are not asserted (that is the benchmarks' job); what is asserted is what
must hold whatever the machine's speed.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BertForMaskedLM, BertModel

from elm_eval.errors import ElmEvalError
from elm_eval.latency import (
    LatencyConfig,
    block_latency_table,
    count_parameters,
    measure_latency,
    measure_module_latency,
    peak_memory_bytes,
)


@pytest.fixture(scope="module")
def bert(tokenizer, bert_config) -> BertModel:
    torch.manual_seed(0)
    return BertModel(bert_config(len(tokenizer)))


def test_grid_has_one_consistent_entry_per_pair(bert) -> None:
    config = LatencyConfig(
        batch_sizes=[1, 4], seq_lengths=[8, 32], warmup=1, repeats=5, num_threads=1, progress=False
    )
    previous = torch.get_num_threads()
    result = measure_latency(bert, config, name="tiny")
    assert torch.get_num_threads() == previous  # the thread count is restored afterwards
    assert result.num_threads == 1 and all(e.stats.num_threads == 1 for e in result.entries)
    assert [(e.batch_size, e.seq_length) for e in result.entries] == [(1, 8), (1, 32), (4, 8), (4, 32)]
    for entry in result.entries:
        stats = entry.stats
        assert stats.repeats == 5 and stats.warmup == 1 and stats.device == "cpu"
        assert 0 < stats.min_ms <= stats.median_ms <= stats.max_ms
        assert stats.min_ms <= stats.mean_ms <= stats.max_ms
    assert result.num_parameters == sum(p.numel() for p in bert.parameters())
    assert result.parameter_bytes == sum(
        t.numel() * t.element_size() for t in [*bert.parameters(), *bert.buffers()]
    )
    assert result.model == "tiny" and result.entry(4, 32).batch_size == 4


def test_peak_memory_counts_torch_allocations_of_one_call() -> None:
    """Two live float32 buffers of n x 1024 are the peak of this function (the result is freed at the end)."""

    def two_buffers(n: int) -> None:
        first = torch.ones(n, 1024)
        second = torch.ones(n, 1024)
        del first, second

    for n in (64, 256):
        assert peak_memory_bytes(lambda n=n: two_buffers(n), torch.device("cpu")) == 2 * n * 1024 * 4


def test_peak_memory_grows_with_batch_and_excludes_weights(bert) -> None:
    config = LatencyConfig(batch_sizes=[1, 8], seq_lengths=[32], warmup=0, repeats=1, progress=False)
    result = measure_latency(bert, config)
    small, large = (entry.peak_memory_bytes for entry in result.entries)
    assert 0 < small < large
    # the output alone (batch x seq x hidden float32) is live at the end of the forward
    assert large >= 8 * 32 * 32 * 4
    assert result.peak_memory_method.startswith("torch profiler")


def test_base_head_times_the_same_network_in_memory_and_from_a_directory(
    tokenizer, bert_config, tmp_path
) -> None:
    torch.manual_seed(0)
    with_head = BertForMaskedLM(bert_config(len(tokenizer)))
    with_head.save_pretrained(tmp_path / "mlm")
    config = LatencyConfig(
        batch_sizes=[1], seq_lengths=[8], warmup=0, repeats=1, measure_memory=False, progress=False
    )
    in_memory = measure_latency(with_head, config)
    on_disk = measure_latency(tmp_path / "mlm", config)
    body = BertModel(
        bert_config(len(tokenizer))
    )  # AutoModel's BERT body has a pooler; the MLM model has none
    assert in_memory.num_parameters == on_disk.num_parameters == count_parameters(body)
    whole = measure_latency(with_head, config.model_copy(update={"head": "masked-lm"}))
    assert whole.num_parameters == count_parameters(with_head) != in_memory.num_parameters


def test_module_latency_for_blocks(bert) -> None:
    hidden = torch.randn(2, 16, 32)
    layer = bert.encoder.layer[0]
    layer.train()
    stats = measure_module_latency(layer, (hidden,), warmup=1, repeats=4, num_threads=1)
    assert stats.repeats == 4 and stats.min_ms <= stats.median_ms <= stats.max_ms and stats.num_threads == 1
    assert layer.training  # measured in eval mode, then put back in the mode it was in
    table = block_latency_table(
        {"layer0": bert.encoder.layer[0], "ffn": bert.encoder.layer[0].intermediate}, hidden
    )
    assert set(table) == {"layer0", "ffn"}
    keyword = measure_module_latency(torch.nn.Linear(32, 8), {"input": torch.randn(4, 32)}, repeats=2)
    assert keyword.repeats == 2


def test_latency_input_errors(bert) -> None:
    with pytest.raises(ElmEvalError, match=r"seq_lengths: \[128\] exceed the model's 64 position embeddings"):
        measure_latency(bert, LatencyConfig(seq_lengths=[16, 128], progress=False))
    with pytest.raises(ElmEvalError, match="no config.vocab_size"):
        measure_latency(torch.nn.Linear(2, 2), LatencyConfig(progress=False))
    if not torch.cuda.is_available():
        with pytest.raises(ElmEvalError, match="CUDA is not available"):
            measure_module_latency(torch.nn.Linear(2, 2), torch.randn(1, 2), device="cuda")
