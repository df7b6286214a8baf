"""Perplexity equals exp of a loss computed by hand, for masked and sliding-window causal LMs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import BertForMaskedLM, BertModel, GPT2LMHeadModel

from elm_eval.errors import ElmEvalError
from elm_eval.lm import (
    CausalLMConfig,
    MaskedLMConfig,
    MaskingConfig,
    causal_lm_perplexity,
    causal_lm_perplexity_from_ids,
    mask_tokens,
    masked_lm_inputs,
    masked_lm_perplexity,
    sliding_windows,
)


@pytest.fixture(scope="module")
def mlm(tokenizer, bert_config) -> BertForMaskedLM:
    torch.manual_seed(0)
    return BertForMaskedLM(bert_config(len(tokenizer))).eval()


@pytest.fixture(scope="module")
def clm(tokenizer, gpt2_config) -> GPT2LMHeadModel:
    torch.manual_seed(1)
    return GPT2LMHeadModel(gpt2_config(len(tokenizer))).eval()


def _nll_float64(logits: torch.Tensor, targets: list[int]) -> float:
    """Negative log-likelihood of ``targets`` under ``logits`` rows, in float64 numpy."""
    values = logits.detach().double().numpy()
    log_z = np.log(np.exp(values - values.max(-1, keepdims=True)).sum(-1)) + values.max(-1)
    return float(sum(log_z[i] - values[i, t] for i, t in enumerate(targets)))


def test_masked_lm_perplexity_is_exp_of_hand_computed_loss(mlm, tokenizer, sentences) -> None:
    texts = sentences(30, seed=0)
    config = MaskedLMConfig(max_length=10, batch_size=4, progress=False)
    result = masked_lm_perplexity(mlm, tokenizer, texts, config)
    inputs, labels = masked_lm_inputs(tokenizer, texts, config)
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, label in zip(inputs, labels, strict=True):  # one unpadded sequence at a time
            logits = mlm(input_ids=torch.tensor([ids])).logits[0]
            where = [i for i, t in enumerate(label) if t != -100]
            total += _nll_float64(logits[where], [label[i] for i in where])
            count += len(where)
    assert result.num_scored_tokens == count > 20
    assert result.loss == pytest.approx(total / count, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)
    assert len(inputs) == result.num_sequences > len(texts)  # long sentences overflowed into more chunks


def test_masked_lm_loss_matches_the_model_own_loss_and_ignores_batch_size(mlm, tokenizer, sentences) -> None:
    texts = sentences(12, seed=1)
    one = masked_lm_perplexity(
        mlm, tokenizer, texts, MaskedLMConfig(max_length=16, batch_size=1, progress=False)
    )
    many = masked_lm_perplexity(
        mlm, tokenizer, texts, MaskedLMConfig(max_length=16, batch_size=64, progress=False)
    )
    assert one.loss == pytest.approx(many.loss, rel=1e-5)
    inputs, labels = masked_lm_inputs(tokenizer, texts, MaskedLMConfig(max_length=16))
    width = max(map(len, inputs))
    ids = torch.tensor([row + [0] * (width - len(row)) for row in inputs])
    target = torch.tensor([row + [-100] * (width - len(row)) for row in labels])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in inputs])
    with torch.no_grad():
        own = mlm(input_ids=ids, attention_mask=mask, labels=target).loss  # mean CE over masked tokens
    assert many.loss == pytest.approx(float(own), rel=1e-5)


def test_masking_is_seeded_skips_special_tokens_and_follows_80_10_10() -> None:
    rng = np.random.default_rng(0)
    sequences = [[2, *rng.integers(10, 60, 200).tolist(), 3] for _ in range(50)]
    special = [[1] + [0] * 200 + [1] for _ in sequences]
    masking = MaskingConfig(seed=7)
    inputs, labels = mask_tokens(sequences, special, mask_token_id=4, vocab_size=60, masking=masking)
    again, _ = mask_tokens(sequences, special, mask_token_id=4, vocab_size=60, masking=masking)
    other, _ = mask_tokens(sequences, special, mask_token_id=4, vocab_size=60, masking=MaskingConfig(seed=8))
    assert inputs == again and inputs != other
    chosen = np.array([[t != -100 for t in row] for row in labels])
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    n = 50 * 200
    assert abs(chosen.sum() - 0.15 * n) < 4 * math.sqrt(n * 0.15 * 0.85)
    original = np.array(sequences)
    masked = np.array(inputs)
    as_mask = (masked == 4) & chosen
    unchanged = (masked == original) & chosen
    picked = chosen.sum()
    assert abs(as_mask.sum() / picked - 0.8) < 0.04
    # random replacements can redraw the original token (1 in 60), so "unchanged" is a little over 10%
    assert abs(unchanged.sum() / picked - (0.1 + 0.1 / 60)) < 0.03
    assert ((masked != original) & ~chosen).sum() == 0  # nothing outside the chosen tokens changes


def _hf_guide_sliding_window_nll(model, ids: list[int], max_length: int, stride: int) -> tuple[float, int]:
    """The loop of the transformers perplexity guide, written out with the model's own loss."""
    stream = torch.tensor([ids])
    total, count, prev_end = 0.0, 0, 0
    for begin in range(0, stream.size(1), stride):
        end = min(begin + max_length, stream.size(1))
        target_len = end - prev_end
        window = stream[:, begin:end]
        target = window.clone()
        target[:, :-target_len] = -100
        with torch.no_grad():
            loss = model(input_ids=window, labels=target).loss
        valid = int((target[:, 1:] != -100).sum())
        total += float(loss) * valid
        count += valid
        prev_end = end
        if end == stream.size(1):
            break
    return total, count


@pytest.mark.parametrize(("max_length", "stride"), [(16, 8), (16, 5), (16, 16), (64, 32)])
def test_causal_lm_sliding_window_matches_manual_loop(clm, max_length: int, stride: int) -> None:
    ids = torch.randint(5, 60, (77,), generator=torch.Generator().manual_seed(2)).tolist()
    config = CausalLMConfig(max_length=max_length, stride=stride, batch_size=3, progress=False)
    result = causal_lm_perplexity_from_ids(clm, ids, config)
    total, count = _hf_guide_sliding_window_nll(clm, ids, max_length, stride)
    assert result.num_scored_tokens == count
    assert result.loss == pytest.approx(total / count, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)
    if stride < max_length:
        assert count == len(ids) - 1  # with overlap every token but the first is scored once


def test_causal_lm_one_window_equals_float64_reference(clm) -> None:
    ids = torch.randint(5, 60, (40,), generator=torch.Generator().manual_seed(3)).tolist()
    result = causal_lm_perplexity_from_ids(clm, ids, CausalLMConfig(max_length=64, stride=32, progress=False))
    with torch.no_grad():
        logits = clm(input_ids=torch.tensor([ids])).logits[0]
    expected = _nll_float64(logits[:-1], ids[1:]) / (len(ids) - 1)
    assert result.loss == pytest.approx(expected, rel=1e-5)


@given(n=st.integers(2, 300), max_length=st.integers(2, 40), stride_fraction=st.floats(0.01, 0.99))
def test_overlapping_windows_score_every_token_after_the_first_exactly_once(
    n: int, max_length: int, stride_fraction: float
) -> None:
    stride = max(1, min(max_length - 1, round(max_length * stride_fraction)))
    scored = [t for begin, end, first in sliding_windows(n, max_length, stride) for t in range(first, end)]
    assert scored == list(range(1, n))
    assert all(end - begin <= max_length for begin, end, _ in sliding_windows(n, max_length, stride))


def test_causal_lm_on_text_equals_the_same_token_stream(clm, tokenizer, sentences) -> None:
    texts = sentences(20, seed=4)
    config = CausalLMConfig(max_length=32, stride=16, progress=False)
    from_text = causal_lm_perplexity(clm, tokenizer, texts, config)
    ids = tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    assert from_text.loss == causal_lm_perplexity_from_ids(clm, ids, config).loss
    assert from_text.num_scored_tokens == len(ids) - 1


def test_lm_errors_are_clear(tokenizer, bert_config, gpt2_config, tmp_path: Path) -> None:
    base = BertModel(bert_config(len(tokenizer)))
    with pytest.raises(ElmEvalError, match="returned no logits"):
        masked_lm_perplexity(
            base,
            tokenizer,
            ["good movie"],
            MaskedLMConfig(max_length=16, progress=False, masking={"mask_prob": 1.0}),
        )
    base.save_pretrained(tmp_path / "base")
    with pytest.raises(ElmEvalError, match="no trained masked-lm head"):
        masked_lm_perplexity(tmp_path / "base", tokenizer, ["good movie"])
    with pytest.raises(ElmEvalError, match="not found"):
        masked_lm_perplexity(tmp_path / "missing", tokenizer, ["good movie"])
    with pytest.raises(ElmEvalError, match="all texts are empty"):
        masked_lm_perplexity(
            BertForMaskedLM(bert_config(len(tokenizer))), tokenizer, ["", "  "], MaskedLMConfig(max_length=16)
        )
    with pytest.raises(ElmEvalError, match="exceeds the model's 64 position"):
        causal_lm_perplexity_from_ids(
            GPT2LMHeadModel(gpt2_config(len(tokenizer))), [5, 6, 7], CausalLMConfig(max_length=128)
        )
    with pytest.raises(ValueError, match="stride"):
        CausalLMConfig(max_length=8, stride=9)


def test_evaluation_runs_without_dropout_and_restores_training_mode(mlm, tokenizer, sentences) -> None:
    texts = sentences(8, seed=5)
    config = MaskedLMConfig(max_length=16, progress=False)
    reference = masked_lm_perplexity(mlm, tokenizer, texts, config)
    mlm.train()  # hidden dropout 0.1 would change the loss if it stayed on
    try:
        again = masked_lm_perplexity(mlm, tokenizer, texts, config)
        assert mlm.training
    finally:
        mlm.eval()
    assert again.loss == reference.loss
