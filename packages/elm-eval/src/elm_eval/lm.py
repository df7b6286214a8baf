"""Language-model perplexity for any HF model with an LM head.

Masked LM: each text is tokenized into chunks of at most ``max_length`` tokens (long texts overflow
into further chunks, so no text is dropped); 15% of the non-special tokens are chosen, and of
those 80% become the mask token, 10% a random token and 10% stay unchanged (BERT's recipe). The
loss is cross-entropy on the chosen tokens only. Masks are drawn sequence by sequence from one
seeded generator before batching, so the score does not depend on the batch size.

Causal LM: the texts are joined into one token stream and scored with a sliding window of
``max_length`` tokens moved by ``stride`` (the protocol of the transformers perplexity guide):
each window re-reads up to ``max_length - stride`` earlier tokens as context, but only tokens not
scored by an earlier window count, so every token after the first is scored exactly once (with
``stride == max_length`` the first token of each window has no context and is not scored).

Both report the mean negative log-likelihood per scored token (nats) and ``exp`` of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from elm_eval.errors import ElmEvalError
from elm_eval.loading import (
    ModelSource,
    TokenizerSource,
    check_device,
    check_positions,
    check_vocabulary,
    evaluation_mode,
    forward_kwargs,
    load_model,
    load_tokenizer,
    model_name,
    model_vocab_size,
    output_logits,
    resolve_device,
)
from elm_eval.results import LMResult

Device = Annotated[str, AfterValidator(check_device)]
#: Config fields that say how to run, not what is measured: left out of a result's ``settings``.
RUN_ONLY = {"progress", "device", "trust_remote_code"}


class MaskingConfig(BaseModel):
    """Which tokens a masked-LM evaluation hides, and how (defaults: BERT's 15% with 80/10/10)."""

    model_config = ConfigDict(extra="forbid")
    mask_prob: float = Field(0.15, gt=0.0, le=1.0, description="fraction of non-special tokens scored")
    mask_token_fraction: float = Field(0.8, ge=0.0, le=1.0, description="of those, replaced by [MASK]")
    random_token_fraction: float = Field(0.1, ge=0.0, le=1.0, description="of those, replaced at random")
    seed: int = 0

    @model_validator(mode="after")
    def _fractions_fit(self) -> MaskingConfig:
        if self.mask_token_fraction + self.random_token_fraction > 1.0:
            raise ValueError("mask_token_fraction + random_token_fraction must not exceed 1")
        return self


class MaskedLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_length: int = Field(128, ge=4, description="tokens per chunk, special tokens included")
    batch_size: int = Field(8, ge=1)
    masking: MaskingConfig = Field(default_factory=MaskingConfig)
    device: Device = "auto"
    progress: bool = True
    trust_remote_code: bool = Field(False, description="run modelling code saved in the model directory")


class CausalLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_length: int = Field(1024, ge=2, description="window length in tokens")
    stride: int | None = Field(
        None, ge=1, description="tokens the window moves each step; None: half a window"
    )
    batch_size: int = Field(4, ge=1, description="windows per forward pass")
    joiner: str = Field("\n\n", description="text placed between documents before tokenizing")
    device: Device = "auto"
    progress: bool = True
    trust_remote_code: bool = Field(False, description="run modelling code saved in the model directory")

    @model_validator(mode="after")
    def _stride_fits(self) -> CausalLMConfig:
        if self.stride is None:
            self.stride = max(1, self.max_length // 2)
        if self.stride > self.max_length:
            raise ValueError(f"stride ({self.stride}) must not exceed max_length ({self.max_length})")
        return self


def perplexity_of(loss: float) -> float:
    """exp(loss); infinite (not an OverflowError) for a finite loss too large to exponentiate."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def _texts_or_error(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ElmEvalError("texts must be a sequence of strings, not one string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ElmEvalError(f"texts[{i}] is a {type(text).__name__}, not a string")
    kept = [text for text in texts if text.strip()]
    if not kept:
        raise ElmEvalError("no text to evaluate: all texts are empty")
    return kept


def mask_tokens(
    sequences: Sequence[Sequence[int]],
    special_masks: Sequence[Sequence[int]],
    *,
    mask_token_id: int,
    vocab_size: int,
    masking: MaskingConfig,
) -> tuple[list[list[int]], list[list[int]]]:
    """Masked inputs and labels (-100 where not scored) for each sequence, reproducible from the seed."""
    generator = torch.Generator().manual_seed(masking.seed)
    keep_up_to = masking.mask_token_fraction
    random_up_to = masking.mask_token_fraction + masking.random_token_fraction
    inputs, labels = [], []
    for ids, special in zip(sequences, special_masks, strict=True):
        ids_t = torch.tensor(ids, dtype=torch.long)
        chosen = (torch.rand(len(ids), generator=generator) < masking.mask_prob) & (
            torch.tensor(special, dtype=torch.long) == 0
        )
        how = torch.rand(len(ids), generator=generator)
        random_ids = torch.randint(vocab_size, (len(ids),), generator=generator)
        masked = ids_t.clone()
        masked[chosen & (how < keep_up_to)] = mask_token_id
        swap = chosen & (how >= keep_up_to) & (how < random_up_to)
        masked[swap] = random_ids[swap]
        inputs.append(masked.tolist())
        labels.append(torch.where(chosen, ids_t, torch.full_like(ids_t, -100)).tolist())
    return inputs, labels


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(row) for row in rows)
    return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows], dtype=torch.long)


def masked_lm_inputs(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], config: MaskedLMConfig
) -> tuple[list[list[int]], list[list[int]]]:
    """Tokenize and mask ``texts`` exactly as :func:`masked_lm_perplexity` does (exposed for checks)."""
    if tokenizer.mask_token_id is None:
        raise ElmEvalError("the tokenizer has no mask token; masked-LM evaluation needs one")
    encoded = tokenizer(
        _texts_or_error(texts),
        truncation=True,
        max_length=config.max_length,
        return_overflowing_tokens=tokenizer.is_fast,
        return_special_tokens_mask=True,
    )
    return mask_tokens(
        encoded["input_ids"],
        encoded["special_tokens_mask"],
        mask_token_id=tokenizer.mask_token_id,
        vocab_size=len(tokenizer),
        masking=config.masking,
    )


def _masked_nll(
    module: torch.nn.Module,
    inputs: list[list[int]],
    labels: list[list[int]],
    pad_id: int,
    config: MaskedLMConfig,
    device: torch.device,
) -> tuple[float, int]:
    """Summed cross-entropy over the scored (masked) tokens, and their count."""
    total_nll, total_scored = 0.0, 0
    starts = range(0, len(inputs), config.batch_size)
    for start in tqdm(starts, desc="masked-LM", disable=not config.progress, unit="batch"):
        rows = slice(start, start + config.batch_size)
        target = _pad(labels[rows], -100)
        scored = target != -100
        if not scored.any():
            continue
        batch = {
            "input_ids": _pad(inputs[rows], pad_id).to(device),
            "attention_mask": _pad([[1] * len(row) for row in inputs[rows]], 0).to(device),
        }
        logits = output_logits(module(**forward_kwargs(module, batch)), module)
        picked = logits[scored.to(device)].float()
        total_nll += float(
            torch.nn.functional.cross_entropy(picked, target[scored].to(device), reduction="sum")
        )
        total_scored += int(scored.sum())
    return total_nll, total_scored


@torch.inference_mode()
def masked_lm_perplexity(
    model: ModelSource,
    tokenizer: TokenizerSource,
    texts: Sequence[str],
    config: MaskedLMConfig | None = None,
    *,
    name: str | None = None,
) -> LMResult:
    """Masked-LM loss and perplexity of ``model`` on ``texts`` (see the module docstring for the protocol)."""
    config = config or MaskedLMConfig()
    label = model_name(model, name)
    module = load_model(model, "masked-lm", trust_remote_code=config.trust_remote_code)
    tok = load_tokenizer(tokenizer, trust_remote_code=config.trust_remote_code)
    check_positions(module, config.max_length)
    check_vocabulary(module, tok)
    device = resolve_device(config.device)
    inputs, labels = masked_lm_inputs(tok, texts, config)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    with evaluation_mode(module, device):
        total_nll, total_scored = _masked_nll(module, inputs, labels, pad_id, config, device)
    if total_scored == 0:
        raise ElmEvalError("no token was masked; use more text or a larger masking.mask_prob")
    loss = total_nll / total_scored
    return LMResult(
        model=label,
        objective="masked-lm",
        loss=loss,
        perplexity=perplexity_of(loss),
        num_scored_tokens=total_scored,
        num_sequences=len(inputs),
        settings=config.model_dump(exclude=RUN_ONLY),
    )


def sliding_windows(num_tokens: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first_scored)`` per window: tokens ``first_scored..end-1`` are scored in it."""
    windows, scored_up_to, begin = [], 0, 0
    while True:
        end = min(begin + max_length, num_tokens)
        first = max(scored_up_to, begin + 1)
        if first < end:
            windows.append((begin, end, first))
        scored_up_to = end
        if end == num_tokens:
            return windows
        begin += stride


def _windows_nll(
    module: torch.nn.Module,
    stream: torch.Tensor,
    windows: list[tuple[int, int, int]],
    config: CausalLMConfig,
    device: torch.device,
) -> tuple[float, int]:
    """Summed next-token NLL over each window's newly scored tokens, and their count."""
    groups: list[list[tuple[int, int, int]]] = []
    for window in windows:  # one forward pass per group of equally long windows
        length = window[1] - window[0]
        if groups and len(groups[-1]) < config.batch_size and groups[-1][0][1] - groups[-1][0][0] == length:
            groups[-1].append(window)
        else:
            groups.append([window])
    total_nll, total_scored = 0.0, 0
    for group in tqdm(groups, desc="causal-LM", disable=not config.progress, unit="batch"):
        ids = torch.stack([stream[begin:end] for begin, end, _ in group]).to(device)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        logits = output_logits(module(**forward_kwargs(module, batch)), module).float()
        log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
        token_nll = -log_probs.gather(-1, ids[:, 1:, None]).squeeze(-1)  # position j scores token j+1
        for row, (begin, end, first) in enumerate(group):
            total_nll += float(token_nll[row, first - begin - 1 :].sum())
            total_scored += end - first
    return total_nll, total_scored


@torch.inference_mode()
def causal_lm_perplexity_from_ids(
    model: ModelSource,
    token_ids: Sequence[int],
    config: CausalLMConfig | None = None,
    *,
    name: str | None = None,
) -> LMResult:
    """Sliding-window perplexity of a causal LM over one token stream (see the module docstring)."""
    config = config or CausalLMConfig()
    label = model_name(model, name)
    module = load_model(model, "causal-lm", trust_remote_code=config.trust_remote_code)
    check_positions(module, config.max_length)
    device = resolve_device(config.device)
    stream = torch.as_tensor(list(token_ids), dtype=torch.long)
    if stream.numel() < 2:
        raise ElmEvalError(f"the token stream has {stream.numel()} token(s); perplexity needs at least 2")
    rows = model_vocab_size(module)
    if stream.ndim != 1:
        raise ElmEvalError(f"token ids: expected one flat stream of ids, got shape {tuple(stream.shape)}")
    low, high = int(stream.min()), int(stream.max())
    if low < 0 or (rows is not None and high >= rows):
        raise ElmEvalError(
            f"token ids: {low if low < 0 else high} is outside the model's vocabulary of {rows} tokens "
            "(use the tokenizer the model was trained with)"
        )
    stride = config.stride or max(1, config.max_length // 2)  # set by the validator; "or" for type checkers
    windows = sliding_windows(stream.numel(), config.max_length, stride)
    with evaluation_mode(module, device):
        total_nll, total_scored = _windows_nll(module, stream, windows, config, device)
    loss = total_nll / total_scored
    return LMResult(
        model=label,
        objective="causal-lm",
        loss=loss,
        perplexity=perplexity_of(loss),
        num_scored_tokens=total_scored,
        num_sequences=len(windows),
        settings=config.model_dump(exclude=RUN_ONLY),
    )


def causal_lm_perplexity(
    model: ModelSource,
    tokenizer: TokenizerSource,
    texts: Sequence[str],
    config: CausalLMConfig | None = None,
    *,
    name: str | None = None,
) -> LMResult:
    """Join ``texts`` with ``config.joiner``, tokenize without special tokens, and score the stream."""
    config = config or CausalLMConfig()
    label = model_name(model, name)
    module = load_model(model, "causal-lm", trust_remote_code=config.trust_remote_code)
    tok = load_tokenizer(tokenizer, trust_remote_code=config.trust_remote_code)
    check_positions(module, config.max_length)
    resolve_device(config.device)
    # no padding here, so a tokenizer with extra tokens (a pad token past the vocabulary) is fine as
    # long as the text's ids fit; causal_lm_perplexity_from_ids checks exactly that
    joined = config.joiner.join(_texts_or_error(texts))
    ids = tok(joined, add_special_tokens=False, verbose=False)["input_ids"]
    return causal_lm_perplexity_from_ids(module, ids, config, name=label)
