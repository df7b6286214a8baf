"""Tokenizers for the causal family: a BPE trained on the corpus, and GPT-2's from its files."""

import json
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from elm_train.config import ConfigError, TokenizerConfig
from elm_train.pipeline import Run, run_stage
from elm_train.presets import preset
from elm_train.tokenizer import EOS, PAD, TokenizerError, gpt2_from_files, train_bpe

TEXTS = [
    "the company said its profit rose in the third quarter",
    "the market fell as investors sold shares of the company",
    "analysts said the profit of the market leader rose sharply",
] * 20

TRAIN_IN_A_FRESH_PROCESS = """
import json, sys
from elm_train.tokenizer import train_bpe
texts = json.loads(sys.stdin.read())
print(train_bpe(texts, 300, 2).backend_tokenizer.to_str())
"""


def _byte_symbols() -> dict[int, str]:
    """GPT-2's byte -> printable-character table, written out from its definition: printable
    Latin-1 bytes stand for themselves, the other 68 bytes map to 256, 257, ... in byte order."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in kept}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def test_bpe_training_is_deterministic_across_processes():
    first = train_bpe(TEXTS, vocab_size=300, min_frequency=2)
    again = train_bpe(TEXTS, vocab_size=300, min_frequency=2)
    assert first.backend_tokenizer.to_str() == again.backend_tokenizer.to_str()
    fresh = subprocess.run(
        [sys.executable, "-c", TRAIN_IN_A_FRESH_PROCESS],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        check=True,
    )
    assert fresh.stdout.strip() == first.backend_tokenizer.to_str()


def test_bpe_vocabulary_specials_and_round_trip(tmp_path):
    tok = train_bpe(TEXTS, vocab_size=300, min_frequency=2)
    vocab = tok.get_vocab()
    assert len(tok) == len(vocab) <= 300
    assert set(_byte_symbols().values()) <= set(vocab)  # every byte has a symbol: nothing is unknown
    assert (tok.eos_token, tok.bos_token, tok.pad_token) == (EOS, EOS, PAD)
    assert (vocab[EOS], vocab[PAD]) == (0, 1)
    assert "Ġcompany" in vocab and "Ġprofit" in vocab  # frequent words became single tokens
    text = "the company said Zürich rose 3%"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(text)["input_ids"] == ids
    assert (loaded.eos_token_id, loaded.pad_token_id) == (0, 1)


def test_bpe_rejects_a_vocabulary_smaller_than_the_bytes():
    with pytest.raises(TokenizerError, match="smaller than the 256 byte symbols"):
        train_bpe(TEXTS, vocab_size=200)
    with pytest.raises(TokenizerError, match="empty corpus"):
        train_bpe([], vocab_size=300)


def _write_gpt2_files(directory, merges: list[str]) -> dict[str, int]:
    encoder = {symbol: i for i, symbol in enumerate(sorted(_byte_symbols().values()))}
    for merge in merges:
        encoder[merge.replace(" ", "")] = len(encoder)
    encoder[EOS] = len(encoder)
    directory.mkdir(exist_ok=True)
    (directory / "encoder.json").write_text(json.dumps(encoder))
    (directory / "vocab.bpe").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return encoder


def test_gpt2_files_apply_the_merges_in_rank_order(tmp_path):
    encoder = _write_gpt2_files(tmp_path, ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "o r"])
    tok = gpt2_from_files(tmp_path)
    # "hello": h+e, l+l, he+ll, hell+o. " world": Ġ+w, then Ġw+o outranks o+r, so "r" stays alone.
    expected = ["hello", "Ġwo", "r", "l", "d"]
    assert tok("hello world")["input_ids"] == [encoder[t] for t in expected]
    assert tok.convert_ids_to_tokens(tok("hello world")["input_ids"]) == expected
    assert len(tok) == len(encoder)
    assert tok.eos_token_id == tok.pad_token_id == encoder[EOS]
    byte = _byte_symbols()[ord("\n")]  # bytes outside printable Latin-1 use GPT-2's remapped symbols
    assert tok("\n")["input_ids"] == [encoder[byte]]


def test_gpt2_files_errors_name_the_file(tmp_path):
    with pytest.raises(TokenizerError, match="encoder.json"):
        gpt2_from_files(tmp_path)
    _write_gpt2_files(tmp_path, ["h e"])
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\nh e x\n")
    with pytest.raises(TokenizerError, match=r"vocab.bpe:2: a merge is two symbols"):
        gpt2_from_files(tmp_path)
    (tmp_path / "encoder.json").write_text("[1, 2]")
    with pytest.raises(TokenizerError, match="encoder.json: expected a JSON object"):
        gpt2_from_files(tmp_path)


def test_a_run_trains_its_bpe_once_in_the_data_stage(tmp_path):
    config = preset("tiny-clm").model_copy(
        update={"tokenizer": TokenizerConfig(source="bpe", vocab_size=320)}
    )
    run = Run.open(config, tmp_path / "run")
    with pytest.raises(ConfigError, match="run the data stage first"):
        _ = run.tokenizer  # loading it never trains it
    run_stage(run, "data", echo=lambda _: None)
    tok = run.tokenizer
    assert len(tok) == 320 and (tmp_path / "run" / "tokenizer" / "tokenizer.json").is_file()
    assert run.tokenizer_name == "bpe:320:2"
    stamp = (tmp_path / "run" / "tokenizer" / "tokenizer.json").stat().st_mtime_ns
    reopened = Run.open(config, tmp_path / "run")
    assert reopened.tokenizer.get_vocab() == tok.get_vocab()
    assert (
        tmp_path / "run" / "tokenizer" / "tokenizer.json"
    ).stat().st_mtime_ns == stamp  # loaded, not retrained
    assert reopened.initial_space.backbone.vocab_size == 320
    run_stage(reopened, "data", force=True, echo=lambda _: None)  # a rerun keeps the tokenizer
    assert (tmp_path / "run" / "tokenizer" / "tokenizer.json").stat().st_mtime_ns == stamp
