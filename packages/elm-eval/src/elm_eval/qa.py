"""Extractive question answering for any Hugging Face model: features, post-processing, SQuAD scores,
and a fine-tune-and-score loop (the transformers ``run_qa`` recipe).

Preprocessing: the question first (left whitespace stripped, cut to ``max_query_length`` tokens as
BERT's SQuAD script does), the context second and the only part truncated, in windows of
``max_length`` tokens overlapping by ``doc_stride`` (``return_overflowing_tokens``), with the offset
mapping that leads back to the context's characters. A training window's labels are the answer's
first and last token, or the first token (CLS) when the answer is not wholly inside the window or
the question has none.

Post-processing: for each example, the ``n_best`` highest-scoring spans (start logit + end logit)
over all its windows, a span being context tokens only, end not before start, at most
``max_answer_length`` tokens. The search is exact (every valid pair is scored), where ``run_qa``
pairs only the 20 best starts with the 20 best ends and can miss the best valid span. For v2.0 the
null score is the smallest CLS start+end score over the example's windows, and the example has no
answer when null score - best span score exceeds a threshold; :func:`score_predictions` chooses the
threshold that maximises F1 on the split it scores (the dev set), as the BERT paper did.

Scores are the ``squad`` / ``squad_v2`` metric modules shipped with elm-eval (loaded by path,
offline), which implement the official evaluation scripts.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, PreTrainedModel, PreTrainedTokenizerBase

from elm_eval.errors import ElmEvalError
from elm_eval.loading import (
    ModelSource,
    TokenizerSource,
    check_device,
    check_positions,
    check_vocabulary,
    forward_kwargs,
    is_pretrained,
    load_model,
    load_tokenizer,
    model_name,
    reload_with_head,
    resolve_device,
)
from elm_eval.metrics import compute_qa_metric
from elm_eval.qa_data import QAData, QASplit, QATaskSpec, get_qa_task, load_qa_data
from elm_eval.results import TaskResult


class QAFeatureConfig(BaseModel):
    """How examples become model inputs and logits become answers (run_qa's defaults, and BERT's
    ``max_query_length`` 64)."""

    model_config = ConfigDict(extra="forbid")
    max_length: int = Field(384, ge=8)
    doc_stride: int = Field(128, ge=1)
    max_query_length: int | None = Field(64, ge=1)
    """Questions are cut to this many tokens; ``None`` keeps them whole (a too-long one is an error)."""
    n_best: int = Field(20, ge=1)
    max_answer_length: int = Field(30, ge=1)

    @model_validator(mode="after")
    def _window_fits(self) -> QAFeatureConfig:
        if self.doc_stride >= self.max_length:
            raise ValueError(f"doc_stride {self.doc_stride} must be below max_length {self.max_length}")
        if (
            self.max_query_length is not None
            and self.max_query_length + 4 + self.doc_stride > self.max_length
        ):
            raise ValueError(
                f"max_query_length {self.max_query_length} + doc_stride {self.doc_stride} + special tokens "
                f"leave no new context in a window of max_length {self.max_length}"
            )
        return self


class QAConfig(QAFeatureConfig):
    """Fine-tuning and scoring settings; the rest as :class:`~elm_eval.FinetuneConfig` (lr 3e-5 and
    2 epochs as run_qa's SQuAD example)."""

    learning_rate: float = Field(3e-5, gt=0)
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(12, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 0
    device: Annotated[str, AfterValidator(check_device)] = "auto"
    progress: bool = True
    trust_remote_code: bool = False


RUN_ONLY = {"progress", "device", "trust_remote_code"}


# --- features -------------------------------------------------------------------------------------


def _fast(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if not tokenizer.is_fast:
        raise ElmEvalError(
            f"tokenizer {type(tokenizer).__name__}: question answering needs a fast tokenizer (offset mapping)"
        )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ElmEvalError("the tokenizer has neither a pad nor an eos token; batches cannot be padded")
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prepare_questions(
    tokenizer: PreTrainedTokenizerBase, split: QASplit, config: QAFeatureConfig
) -> list[str]:
    """Questions with left whitespace stripped, cut to ``max_query_length`` tokens; a question that
    leaves no room for ``doc_stride`` new context tokens is an error naming its row."""
    questions = [q.lstrip() for q in split.questions]
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    special = tokenizer.num_special_tokens_to_add(pair=True)
    out = []
    for i, (question, offsets) in enumerate(zip(questions, encoded["offset_mapping"], strict=True)):
        limit = config.max_query_length
        if limit is not None and len(offsets) > limit:
            question = question[: offsets[limit - 1][1]]
            offsets = offsets[:limit]
        room = config.max_length - special - len(offsets)
        if room <= config.doc_stride:
            raise ElmEvalError(
                f"{split.where[i]}: the question is {len(offsets)} tokens long, which leaves {room} tokens of "
                f"a max_length {config.max_length} window for the context, not more than doc_stride "
                f"{config.doc_stride}; raise max_length or set max_query_length"
            )
        out.append(question)
    return out


def _encode(tokenizer: PreTrainedTokenizerBase, split: QASplit, config: QAFeatureConfig) -> Any:
    tokenizer = _fast(tokenizer)
    right = tokenizer.padding_side == "right"
    questions = prepare_questions(tokenizer, split, config)
    first, second = (questions, split.contexts) if right else (split.contexts, questions)
    return tokenizer(
        first,
        second,
        truncation="only_second" if right else "only_first",
        max_length=config.max_length,
        stride=config.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    ), (1 if right else 0)


def _cls_index(input_ids: Sequence[int], tokenizer: PreTrainedTokenizerBase) -> int:
    cls = tokenizer.cls_token_id
    return input_ids.index(cls) if cls is not None and cls in input_ids else 0


def train_features(
    tokenizer: PreTrainedTokenizerBase, split: QASplit, config: QAFeatureConfig
) -> dict[str, list]:
    """Training windows: ``input_ids`` (and ``token_type_ids``/``attention_mask`` as the tokenizer
    makes them), ``start_positions`` and ``end_positions`` (CLS for no answer in the window) and
    ``example_index``. The first gold answer is the label (SQuAD train has one per question)."""
    encoded, context_id = _encode(tokenizer, split, config)
    out: dict[str, list] = {
        key: [] for key in encoded if key not in ("offset_mapping", "overflow_to_sample_mapping")
    }
    out |= {"start_positions": [], "end_positions": [], "example_index": []}
    for i, offsets in enumerate(encoded["offset_mapping"]):
        for key in encoded:
            if key not in ("offset_mapping", "overflow_to_sample_mapping"):
                out[key].append(encoded[key][i])
        example = encoded["overflow_to_sample_mapping"][i]
        sequence_ids = encoded.sequence_ids(i)
        cls = _cls_index(encoded["input_ids"][i], tokenizer)
        answers = split.answers[example]
        start = end = cls
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            context = [t for t, s in enumerate(sequence_ids) if s == context_id]
            first, last = context[0], context[-1]
            if offsets[first][0] <= start_char and offsets[last][1] >= end_char:
                start = first
                while start <= last and offsets[start][0] <= start_char:
                    start += 1
                start -= 1
                end = last
                while end >= first and offsets[end][1] >= end_char:
                    end -= 1
                end += 1
        out["start_positions"].append(start)
        out["end_positions"].append(end)
        out["example_index"].append(example)
    return out


@dataclass
class EvalFeatures:
    """Evaluation windows: model inputs, each window's example, and each token's character span in
    the context (None for question, special and padding tokens)."""

    inputs: dict[str, list]
    example_index: list[int]
    offsets: list[list[tuple[int, int] | None]]
    cls_index: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.example_index)


def eval_features(
    tokenizer: PreTrainedTokenizerBase, split: QASplit, config: QAFeatureConfig
) -> EvalFeatures:
    """The windows of ``split`` for prediction (run_qa's ``prepare_validation_features``)."""
    encoded, context_id = _encode(tokenizer, split, config)
    inputs = {
        k: list(v) for k, v in encoded.items() if k not in ("offset_mapping", "overflow_to_sample_mapping")
    }
    offsets = []
    cls = []
    for i, spans in enumerate(encoded["offset_mapping"]):
        sequence_ids = encoded.sequence_ids(i)
        offsets.append(
            [tuple(span) if sequence_ids[t] == context_id else None for t, span in enumerate(spans)]
        )
        cls.append(_cls_index(encoded["input_ids"][i], tokenizer))
    return EvalFeatures(inputs, list(encoded["overflow_to_sample_mapping"]), offsets, cls)


# --- post-processing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    text: str
    score: float
    start_char: int
    end_char: int


@dataclass(frozen=True)
class QAPrediction:
    """An example's answer: the best span's text, the n best spans, and (v2.0) the null score
    difference (null score - best span score; above the threshold means no answer)."""

    id: str
    text: str
    n_best: list[Span]
    null_score_diff: float


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: Sequence[tuple[int, int] | None],
    max_answer_length: int,
    n_best: int,
) -> list[tuple[float, int, int]]:
    """The ``n_best`` valid (score, first token, last token) of one window, best first: both tokens
    in the context, last >= first, at most ``max_answer_length`` tokens. Every pair is scored."""
    tokens = np.array(
        [t for t, span in enumerate(offsets[: len(start_logits)]) if span is not None], dtype=int
    )
    if tokens.size == 0:
        return []
    scores = start_logits[tokens][:, None] + end_logits[tokens][None, :]
    length = tokens[None, :] - tokens[:, None] + 1
    valid = (length >= 1) & (length <= max_answer_length)
    firsts, lasts = np.nonzero(valid)
    values = scores[firsts, lasts]
    order = np.argsort(-values, kind="stable")[:n_best]
    return [(float(values[k]), int(tokens[firsts[k]]), int(tokens[lasts[k]])) for k in order]


def postprocess(
    split: QASplit,
    features: EvalFeatures,
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    config: QAFeatureConfig,
) -> list[QAPrediction]:
    """Each example's answer from its windows' logits (see the module docstring)."""
    windows: list[list[int]] = [[] for _ in range(len(split))]
    for f, example in enumerate(features.example_index):
        windows[example].append(f)
    predictions = []
    for example, feature_ids in enumerate(windows):
        context = split.contexts[example]
        candidates: list[Span] = []
        null = math.inf
        for f in feature_ids:
            start, end = (
                np.asarray(start_logits[f], dtype=np.float64),
                np.asarray(end_logits[f], dtype=np.float64),
            )
            cls = features.cls_index[f]
            null = min(null, float(start[cls] + end[cls]))
            for score, first, last in best_spans(
                start, end, features.offsets[f], config.max_answer_length, config.n_best
            ):
                a, b = features.offsets[f][first][0], features.offsets[f][last][1]  # type: ignore[index]
                candidates.append(Span(context[a:b], score, a, b))
        candidates.sort(key=lambda span: -span.score)
        top = candidates[: config.n_best]
        best = top[0] if top else None
        diff = null - best.score if best is not None else math.inf
        predictions.append(QAPrediction(split.ids[example], best.text if best else "", top, diff))
    return predictions


def choose_null_threshold(predictions: Sequence[QAPrediction], split: QASplit) -> float:
    """The null-score-difference threshold with the best F1 on ``split``: every example whose
    difference is above it gets no answer. Swept over the differences themselves (as the official
    script's ``find_best_thresh``), starting from "answer nothing"."""
    f1_if_answered = _answered_f1(predictions, split)
    has_answer = [bool(a["text"]) for a in split.answers]
    order = sorted(range(len(predictions)), key=lambda k: predictions[k].null_score_diff)
    current = best = float(sum(not h for h in has_answer))  # everything null: the unanswerable are right
    finite = [p.null_score_diff for p in predictions if math.isfinite(p.null_score_diff)]
    threshold = (min(finite) - 1.0) if finite else 0.0
    for k in order:
        diff = predictions[k].null_score_diff
        if not math.isfinite(diff):
            break  # no span at all: always null
        current += f1_if_answered[k] - (0.0 if has_answer[k] else 1.0)
        if current > best:
            best, threshold = current, diff
    return threshold


def _answered_f1(predictions: Sequence[QAPrediction], split: QASplit) -> list[float]:
    """Each example's F1 when its best span is given as the answer (official v2 rules)."""
    from elm_eval.metrics.squad_v2 import compute_f1, normalize_answer

    out = []
    for prediction, answers in zip(predictions, split.answers, strict=True):
        golds = [t for t in answers["text"] if normalize_answer(t)] or [""]
        out.append(max(compute_f1(gold, prediction.text) for gold in golds))
    return out


def score_predictions(
    predictions: Sequence[QAPrediction],
    split: QASplit,
    metric: str,
    null_threshold: float | None = None,
) -> tuple[float, dict[str, float]]:
    """SQuAD scores of ``predictions`` on ``split``: v1.1 exact match and F1; v2.0 with the null
    threshold (chosen on ``split`` when None, and reported as ``null_threshold``)."""
    if [p.id for p in predictions] != split.ids:
        raise ElmEvalError("predictions and references are not the same examples in the same order")
    references = split.references()
    if metric == "squad":
        records = [{"id": p.id, "prediction_text": p.text} for p in predictions]
        return compute_qa_metric("squad", records, references)
    threshold = choose_null_threshold(predictions, split) if null_threshold is None else null_threshold
    records = [
        {
            "id": p.id,
            "prediction_text": "" if p.null_score_diff > threshold else p.text,
            "no_answer_probability": 0.0,
        }
        for p in predictions
    ]
    score, values = compute_qa_metric("squad_v2", records, references)
    values = {k: v for k, v in values.items() if not k.startswith("best_")}
    values["null_threshold"] = float(threshold)
    return score, values


# --- models ---------------------------------------------------------------------------------------


def prepare_qa_model(model: ModelSource, seed: int, *, trust_remote_code: bool = False) -> torch.nn.Module:
    """A trainable QA model from ``model``: a QA model object is copied; any other transformers model
    (or a directory / hub id) is loaded with ``AutoModelForQuestionAnswering``, the new head seeded."""
    if isinstance(model, torch.nn.Module) and (
        type(model).__name__.endswith("ForQuestionAnswering") or not is_pretrained(model)
    ):
        return copy.deepcopy(model)
    torch.manual_seed(seed)
    if isinstance(model, PreTrainedModel):
        return reload_with_head(model, "question-answering", trust_remote_code=trust_remote_code)
    return load_model(model, "question-answering", trust_remote_code=trust_remote_code)


def _batches(
    rows: dict[str, list], keys: list[str], collate: DataCollatorWithPadding, size: int, order: list[int]
) -> Iterator[dict[str, torch.Tensor]]:
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        yield collate([{key: rows[key][i] for key in keys} for i in idx])


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    features: EvalFeatures,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    device: torch.device,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and end logits of every window (each trimmed to its own length), in order."""
    was_training = model.training
    model.eval()
    keys = [k for k in features.inputs if k in ("input_ids", "attention_mask", "token_type_ids")]
    tokenizer = _fast(tokenizer)
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    left = tokenizer.padding_side == "left"
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    order = list(range(len(features)))
    for batch in _batches(features.inputs, keys, collate, batch_size, order):
        lengths = batch["attention_mask"].sum(dim=1).tolist() if "attention_mask" in batch else None
        out = model(**forward_kwargs(model, {k: v.to(device) for k, v in batch.items()}))
        for row, (s, e) in enumerate(
            zip(out.start_logits.float().cpu(), out.end_logits.float().cpu(), strict=True)
        ):
            n = int(lengths[row]) if lengths is not None else s.shape[0]
            keep = slice(s.shape[0] - n, None) if left else slice(0, n)  # the window's own tokens
            starts.append(s[keep].numpy())
            ends.append(e[keep].numpy())
    model.train(was_training)
    return starts, ends


def evaluate_qa_model(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    split: QASplit,
    metric: str,
    config: QAFeatureConfig,
    *,
    batch_size: int = 64,
    features: EvalFeatures | None = None,
    null_threshold: float | None = None,
) -> tuple[float, dict[str, float], list[QAPrediction]]:
    """Predict ``split`` with a QA model and score it; returns F1, every value, the predictions."""
    features = features if features is not None else eval_features(tokenizer, split, config)
    device = next(model.parameters()).device
    starts, ends = predict_logits(model, features, tokenizer, batch_size, device)
    predictions = postprocess(split, features, starts, ends, config)
    score, values = score_predictions(predictions, split, metric, null_threshold)
    return score, values, predictions


def finetune_qa(
    model: ModelSource,
    tokenizer: TokenizerSource,
    task: QATaskSpec | QAData | str,
    config: QAConfig | None = None,
    *,
    name: str | None = None,
) -> tuple[TaskResult, torch.nn.Module]:
    """Fine-tune a QA head on ``task``'s train split (plain torch loop, seeded) and score validation
    after every epoch; the result is the last epoch's score (as :func:`elm_eval.finetune`). The data,
    tokenizer, ``max_length`` and the device are checked before the first step."""
    from elm_eval.finetune import _optimizer_and_schedule

    config = config or QAConfig()
    if isinstance(task, str):
        task = get_qa_task(task)
    data = task if isinstance(task, QAData) else load_qa_data(task)
    spec = data.spec
    tok = _fast(load_tokenizer(tokenizer, trust_remote_code=config.trust_remote_code))
    qa_model = prepare_qa_model(model, config.seed, trust_remote_code=config.trust_remote_code)
    check_positions(qa_model, config.max_length)
    check_vocabulary(qa_model, tok)
    device = resolve_device(config.device)
    qa_model.to(device)
    train = train_features(tok, data.train, config)
    validation = eval_features(tok, data.validation, config)
    keys = [k for k in train if k in ("input_ids", "attention_mask", "token_type_ids")]
    collate = DataCollatorWithPadding(tok, return_tensors="pt")
    per_epoch_batches = math.ceil(len(train["input_ids"]) / config.batch_size)
    steps = per_epoch_batches * config.epochs
    optimizer, scheduler = _optimizer_and_schedule(qa_model, config, steps)  # type: ignore[arg-type]
    torch.manual_seed(config.seed)
    shuffler = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    scores: list[float] = []
    values: dict[str, float] = {}
    bar = tqdm(total=steps, desc=f"fine-tune {spec.name}", disable=not config.progress, unit="step")
    for _epoch in range(config.epochs):
        qa_model.train()
        order = torch.randperm(len(train["input_ids"]), generator=shuffler).tolist()
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            batch = collate([{key: train[key][i] for key in keys} for i in idx])
            batch["start_positions"] = torch.tensor([train["start_positions"][i] for i in idx])
            batch["end_positions"] = torch.tensor([train["end_positions"][i] for i in idx])
            loss = qa_model(**forward_kwargs(qa_model, {k: v.to(device) for k, v in batch.items()})).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(qa_model.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.update(1)
        score, values, _ = evaluate_qa_model(
            qa_model,
            tok,
            data.validation,
            spec.metric,
            config,
            batch_size=config.eval_batch_size,
            features=validation,
        )
        scores.append(score)
    bar.close()
    result = TaskResult(
        model=model_name(model, name),
        task=spec.name,
        metric=spec.metric,
        score=scores[-1],
        validation_metrics=values,
        num_parameters=sum(p.numel() for p in qa_model.parameters()),
        num_train_examples=len(data.train),
        num_validation_examples=len(data.validation),
        train_loss_curve=losses,
        validation_score_per_epoch=scores,
        settings=config.model_dump(exclude=RUN_ONLY),
    )
    return result, qa_model
