"""Fine-tune a sequence-classification model on a task and score it with the task's metric.

This is a short plain-torch loop (AdamW, linear warm-up/decay schedule from transformers, gradient
clipping, seeded shuffling and dropout) rather than ``transformers.Trainer``: it is a few dozen
lines, has no hidden defaults, and trains any module that maps a tokenized batch to logits.

The model may be a directory or hub id (loaded with ``AutoModelForSequenceClassification``), an
in-memory ``...ForSequenceClassification`` model (trained as a copy, so the caller's stays intact),
or another in-memory transformers model such as a ``BertModel``; the latter is saved to a temporary
directory and reloaded with a classification head, which is exactly the route a directory takes,
so both give the same numbers. The head is initialised after seeding with ``config.seed``.

The reported score is the metric on the validation split after the last epoch (no best-epoch
picking, which would tune on the split being reported).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Annotated, Literal

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from tqdm.auto import tqdm
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
)

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
    output_logits,
    reload_with_head,
    resolve_device,
)
from elm_eval.metrics import compute_metric
from elm_eval.results import TaskPredictions, TaskResult
from elm_eval.task_data import TaskData, TaskSplit, load_task_data
from elm_eval.tasks import TaskSpec, get_task


class FinetuneConfig(BaseModel):
    """Fine-tuning hyper-parameters; defaults follow common GLUE practice (lr 5e-5, 3 epochs, seq 128)."""

    model_config = ConfigDict(extra="forbid")
    learning_rate: float = Field(5e-5, gt=0)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    max_length: int = Field(128, ge=8)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 0
    device: Annotated[str, AfterValidator(check_device)] = "auto"
    progress: bool = True
    trust_remote_code: bool = Field(False, description="run modelling code saved in the model directory")


#: Config fields that say how to run, not what is measured: left out of a result's ``settings``.
RUN_ONLY = {"progress", "device", "trust_remote_code"}


def _is_classifier(model: torch.nn.Module) -> bool:
    return type(model).__name__.endswith("ForSequenceClassification")


def prepare_classifier(
    model: ModelSource,
    spec: TaskSpec,
    seed: int,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    trust_remote_code: bool = False,
) -> torch.nn.Module:
    """A fresh trainable classifier for ``spec`` from ``model`` (see the module docstring for the routes)."""
    problem = "regression" if spec.task_type == "regression" else "single_label_classification"
    if isinstance(model, torch.nn.Module) and (_is_classifier(model) or not is_pretrained(model)):
        labels = getattr(getattr(model, "config", None), "num_labels", spec.num_labels)
        if labels != spec.num_labels:
            raise ElmEvalError(
                f"label mismatch: the model has {labels} output labels, task {spec.name!r} has {spec.num_labels}"
            )
        return copy.deepcopy(model)
    extra: dict[str, object] = {"num_labels": spec.num_labels, "problem_type": problem}
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        extra["pad_token_id"] = tokenizer.pad_token_id  # GPT-2-style heads need it to find the last token
    torch.manual_seed(seed)  # the new head's initialisation
    if isinstance(model, PreTrainedModel):
        return reload_with_head(
            model, "sequence-classification", trust_remote_code=trust_remote_code, **extra
        )
    return load_model(model, "sequence-classification", trust_remote_code=trust_remote_code, **extra)


def _tokenizer_with_padding(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    if tokenizer.pad_token is not None:
        return tokenizer
    if tokenizer.eos_token is None:
        raise ElmEvalError("the tokenizer has neither a pad nor an eos token; batches cannot be padded")
    padded = copy.deepcopy(tokenizer)
    padded.pad_token = padded.eos_token
    return padded


class _Encoded:
    """A tokenized split, batched with dynamic padding (pad to the longest in each batch)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, split: TaskSplit, max_length: int) -> None:
        args = (split.text_a,) if split.text_b is None else (split.text_a, split.text_b)
        encoded = tokenizer(*args, truncation=True, max_length=max_length)
        self.features = [{key: encoded[key][i] for key in encoded} for i in range(len(split))]
        self.labels = split.labels
        self.collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def batches(self, size: int, order: list[int] | None = None) -> Iterator[tuple[list[int], dict]]:
        order = order if order is not None else list(range(len(self.features)))
        for start in range(0, len(order), size):
            idx = order[start : start + size]
            yield idx, self.collate([self.features[i] for i in idx])

    def num_batches(self, size: int) -> int:
        return math.ceil(len(self.features) / size)


def _loss_fn(regression: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if regression:
        return lambda logits, labels: torch.nn.functional.mse_loss(logits.squeeze(-1), labels.float())
    return lambda logits, labels: torch.nn.functional.cross_entropy(logits, labels.long())


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    data: _Encoded,
    regression: bool,
    batch_size: int,
    device: torch.device,
    progress: bool = False,
) -> list[int] | list[float]:
    """Class ids (argmax) or real values for every example of an encoded split, in order."""
    model.eval()
    out: list = []
    for _, batch in tqdm(
        data.batches(batch_size), total=data.num_batches(batch_size), desc="predict", disable=not progress
    ):
        batch = {key: value.to(device) for key, value in batch.items()}
        logits = output_logits(model(**forward_kwargs(model, batch)), model)
        out.extend(logits.squeeze(-1).float().tolist() if regression else logits.argmax(-1).tolist())
    return out


def score_split(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    spec: TaskSpec,
    split: TaskSplit,
    max_length: int,
    batch_size: int = 64,
    device: str = "cpu",
) -> tuple[float, dict[str, float]]:
    """The task metric of a fine-tuned classifier (a torch model, or an ``OrtModel``) on a labelled
    split, predicted as :func:`finetune` predicts validation: the primary score and every value."""
    if split.labels is None:
        raise ElmEvalError(f"task {spec.name!r}: the split to score has no labels")
    regression = spec.task_type == "regression"
    target = resolve_device(device)
    encoded = _Encoded(_tokenizer_with_padding(tokenizer), split, max_length)
    predictions = predict(model.to(target), encoded, regression, batch_size, target)
    return compute_metric(spec.metric, predictions, list(split.labels))


def _optimizer_and_schedule(
    model: torch.nn.Module, config: FinetuneConfig, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW without weight decay on biases and norm weights (the usual BERT recipe), linear schedule."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    return optimizer, get_linear_schedule_with_warmup(optimizer, round(steps * config.warmup_ratio), steps)


def _count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def finetune(
    model: ModelSource,
    tokenizer: TokenizerSource,
    task: TaskSpec | TaskData,
    config: FinetuneConfig | None = None,
    *,
    name: str | None = None,
) -> tuple[TaskResult, torch.nn.Module]:
    """Fine-tune on ``task``'s train split; score validation (and test when labelled).

    Returns the result and the fine-tuned model (on the device it was trained on). Everything that
    can be checked before training (data, labels, tokenizer against the model's vocabulary,
    ``max_length`` against its positions, the device) is checked before the first step.
    """
    config = config or FinetuneConfig()
    data = task if isinstance(task, TaskData) else load_task_data(task)
    spec = data.spec
    regression = spec.task_type == "regression"
    train_labels, validation_labels = list(data.train.labels or []), list(data.validation.labels or [])
    if len(train_labels) != len(data.train) or len(validation_labels) != len(data.validation):
        raise ElmEvalError(f"task {spec.name!r}: the train and validation splits need labels")
    tok = _tokenizer_with_padding(load_tokenizer(tokenizer, trust_remote_code=config.trust_remote_code))
    classifier = prepare_classifier(model, spec, config.seed, tok, trust_remote_code=config.trust_remote_code)
    check_positions(classifier, config.max_length)
    check_vocabulary(classifier, tok)
    if hasattr(classifier, "config") and getattr(classifier.config, "pad_token_id", None) is None:
        classifier.config.pad_token_id = tok.pad_token_id
    device = resolve_device(config.device)
    classifier.to(device)

    train = _Encoded(tok, data.train, config.max_length)
    validation = _Encoded(tok, data.validation, config.max_length)
    steps = train.num_batches(config.batch_size) * config.epochs
    optimizer, scheduler = _optimizer_and_schedule(classifier, config, steps)
    loss_fn = _loss_fn(regression)
    torch.manual_seed(config.seed)  # dropout
    shuffler = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    per_epoch: list[float] = []
    bar = tqdm(total=steps, desc=f"fine-tune {spec.name}", disable=not config.progress, unit="step")
    for _epoch in range(config.epochs):
        classifier.train()
        order = torch.randperm(len(train.features), generator=shuffler).tolist()
        for idx, batch in train.batches(config.batch_size, order):
            labels = torch.tensor([train_labels[i] for i in idx], device=device)
            inputs = {key: value.to(device) for key, value in batch.items()}
            loss = loss_fn(
                output_logits(classifier(**forward_kwargs(classifier, inputs)), classifier), labels
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(classifier.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        predictions = predict(classifier, validation, regression, config.eval_batch_size, device)
        score, values = compute_metric(spec.metric, predictions, validation_labels)
        per_epoch.append(score)
    bar.close()

    test_metrics = None
    if data.test is not None and data.test.labels is not None:
        test_pred = predict(
            classifier,
            _Encoded(tok, data.test, config.max_length),
            regression,
            config.eval_batch_size,
            device,
        )
        test_metrics = compute_metric(spec.metric, test_pred, list(data.test.labels))[1]
    result = TaskResult(
        model=model_name(model, name),
        task=spec.name,
        metric=spec.metric,
        score=score,
        validation_metrics=values,
        test_metrics=test_metrics,
        num_parameters=_count_parameters(classifier),
        num_train_examples=len(data.train),
        num_validation_examples=len(data.validation),
        train_loss_curve=losses,
        validation_score_per_epoch=per_epoch,
        settings=config.model_dump(exclude=RUN_ONLY),
        validation_predictions=predictions,
    )
    return result, classifier


def evaluate_task(
    model: ModelSource,
    tokenizer: TokenizerSource,
    task: TaskSpec | TaskData | str,
    config: FinetuneConfig | None = None,
    *,
    name: str | None = None,
) -> TaskResult:
    """:func:`finetune` keeping only the result; ``task`` may also be a predefined task name."""
    if isinstance(task, str):
        task = get_task(task)
    return finetune(model, tokenizer, task, config, name=name)[0]


def predict_task(
    model: ModelSource,
    tokenizer: TokenizerSource,
    task: TaskSpec | TaskData | str,
    config: FinetuneConfig | None = None,
    *,
    split: Literal["validation", "test"] = "validation",
    name: str | None = None,
) -> TaskPredictions:
    """Predictions of an already fine-tuned classifier (a directory, hub id or in-memory
    ``...ForSequenceClassification``) for every example of ``split``, with their labels and the
    task metric's score: the per-example result a paired comparison needs. ``config`` gives the
    tokenisation length, evaluation batch size and device (nothing is trained)."""
    config = config or FinetuneConfig()
    if isinstance(task, str):
        task = get_task(task)
    data = task if isinstance(task, TaskData) else load_task_data(task)
    spec = data.spec
    part = data.validation if split == "validation" else data.test
    if part is None or part.labels is None or len(part.labels) != len(part):
        raise ElmEvalError(f"task {spec.name!r}: the {split} split is missing or has no labels")
    tok = _tokenizer_with_padding(load_tokenizer(tokenizer, trust_remote_code=config.trust_remote_code))
    if isinstance(model, torch.nn.Module):
        classifier = model
    else:
        classifier = load_model(model, "sequence-classification", trust_remote_code=config.trust_remote_code)
    labels = getattr(getattr(classifier, "config", None), "num_labels", spec.num_labels)
    if labels != spec.num_labels:
        raise ElmEvalError(
            f"label mismatch: the model has {labels} output labels, task {spec.name!r} has {spec.num_labels}"
        )
    check_positions(classifier, config.max_length)
    check_vocabulary(classifier, tok)
    device = resolve_device(config.device)
    classifier.to(device)
    regression = spec.task_type == "regression"
    predictions = predict(
        classifier, _Encoded(tok, part, config.max_length), regression, config.eval_batch_size, device
    )
    references = list(part.labels)
    return TaskPredictions(
        model=model_name(model, name),
        task=spec.name,
        split=split,
        metric=spec.metric,
        score=compute_metric(spec.metric, predictions, references)[0],
        predictions=predictions,
        labels=references,
    )
