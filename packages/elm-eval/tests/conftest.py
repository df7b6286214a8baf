"""Tiny models and a tiny WordPiece tokenizer built from configs, so no test touches the hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertTokenizerFast, GPT2Config, GPT2LMHeadModel

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "fine", "nice", "happy", "love", "best", "fun"]
NEGATIVE = ["bad", "awful", "poor", "sad", "hate", "worst", "dull", "ugly"]
NEUTRAL = [f"w{i}" for i in range(40)] + ["the", "a", "movie", "film", "is", "was", "and", "it"]
WORDS = POSITIVE + NEGATIVE + NEUTRAL


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine two torch threads
    contending with other processes make a fine-tuning test ~20x slower. Restored after each test."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_vocab(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_vocab(tmp_path_factory.mktemp("tokenizer"))
    # transformers 5: BertTokenizerFast(vocab_file=...) silently builds an empty vocabulary;
    # from_pretrained on a folder holding vocab.txt reads it properly.
    BertTokenizerFast.from_pretrained(str(folder)).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path) -> BertTokenizerFast:
    tok = BertTokenizerFast.from_pretrained(str(tokenizer_dir))
    assert len(tok) == len(SPECIAL) + len(WORDS)
    return tok


def _bert_config(vocab_size: int, **overrides: object) -> BertConfig:
    values = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    values.update(overrides)
    return BertConfig(**values)


def _gpt2_config(vocab_size: int) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=2, eos_token_id=3
    )


def _sentences(count: int, seed: int) -> list[str]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        length = int(torch.randint(3, 14, (1,), generator=generator))
        idx = torch.randint(len(WORDS), (length,), generator=generator).tolist()
        out.append(" ".join(WORDS[i] for i in idx))
    return out


# Test modules cannot import conftest under --import-mode=importlib, so helpers come as fixtures.
@pytest.fixture(scope="session")
def bert_config():
    return _bert_config


@pytest.fixture(scope="session")
def gpt2_config():
    return _gpt2_config


@pytest.fixture(scope="session")
def sentences():
    return _sentences


def _toy_rows(count: int, seed: int) -> list[tuple[str, int]]:
    """Filler words plus one sentiment word that alone decides the label: separable by construction."""
    generator = torch.Generator().manual_seed(seed)

    def pick(words: list[str]) -> str:
        return words[int(torch.randint(len(words), (1,), generator=generator))]

    rows = []
    for i in range(count):
        label = i % 2
        words = [pick(NEUTRAL) for _ in range(int(torch.randint(3, 9, (1,), generator=generator)))]
        words.insert(
            int(torch.randint(len(words) + 1, (1,), generator=generator)),
            pick(POSITIVE if label else NEGATIVE),
        )
        rows.append((" ".join(words), label))
    return rows


@pytest.fixture(scope="session")
def toy_task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/dev/test TSVs of a separable binary task and a task.yaml describing them."""
    folder = tmp_path_factory.mktemp("toy-task")
    for name, count, seed in (("train", 240, 0), ("dev", 80, 1), ("test", 80, 2)):
        lines = ["sentence\tlabel"] + [f"{text}\t{label}" for text, label in _toy_rows(count, seed)]
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "task.yaml").write_text(
        "name: toy\nsource: {kind: files, train: train.tsv, validation: dev.tsv, test: test.tsv}\n"
        "text_columns: [sentence]\nlabel_column: label\nnum_labels: 2\nmetric: accuracy\n",
        encoding="utf-8",
    )
    return folder


def elm_architecture(vocab_size: int, family: str = "masked", positions: int = 64) -> dict:
    """An ELM architecture as the plain JSON dict elm-space writes (elm-eval's tests import neither
    elm-space nor elm-train: the ``elm`` model type comes through the entry point)."""
    return {
        "backbone": {
            "family": family,
            "hidden_size": 32,
            "vocab_size": vocab_size,
            "max_positions": positions,
            "type_vocab_size": 2 if family == "masked" else 0,
            "embedding": {"kind": "plain", "size": None},
        },
        "layers": [
            {"candidate": 0, "kind": "bert", "ffn_width": 32, "heads": 2, "inner_size": None},
            {"candidate": 1, "kind": "mobile", "ffn_width": 16, "heads": 2, "inner_size": 16},
        ],
    }


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> dict[str, Path]:
    """Tiny saved models, each with the test tokenizer: ``mlm`` (BERT masked LM), ``clm`` (GPT-2),
    ``small-vocab`` (a BERT masked LM whose vocabulary is smaller than the tokenizer), and, where a
    package registers model_type ``elm`` through elm-eval's entry point, ``elm-mlm`` and ``elm-clm``
    (ELM exports, custom code files included)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, BertForMaskedLM

    from elm_eval.loading import register_model_types

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    built = {
        "mlm": BertForMaskedLM(_bert_config(len(tokenizer))),
        "clm": GPT2LMHeadModel(_gpt2_config(len(tokenizer))),
        "small-vocab": BertForMaskedLM(_bert_config(40)),
    }
    if "elm" in register_model_types():
        vocab = len(tokenizer)
        built["elm-mlm"] = AutoModelForMaskedLM.from_config(
            AutoConfig.for_model("elm", architecture=elm_architecture(vocab))
        )
        built["elm-clm"] = AutoModelForCausalLM.from_config(
            AutoConfig.for_model("elm", architecture=elm_architecture(vocab, "causal"))
        )
    out = {}
    for name, model in built.items():
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        out[name] = root / name
    return out
