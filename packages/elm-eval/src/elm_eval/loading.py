"""Turn "a model" (a directory, a hub id, or an object already in memory) into a torch module.

Evaluators accept all three so a model found by search and a hand-made baseline pass through the
same code. Loading from a directory never touches the network; a hub id is only tried when the
string is not an existing path and does not look like one, so a typo in a path gives a
"not found" error rather than a confusing hub lookup.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from elm_eval.errors import ElmEvalError

ModelSource = str | os.PathLike[str] | torch.nn.Module
TokenizerSource = str | os.PathLike[str] | PreTrainedTokenizerBase
Head = Literal["base", "masked-lm", "causal-lm", "sequence-classification"]

_AUTO_CLASSES = {
    "base": AutoModel,
    "masked-lm": AutoModelForMaskedLM,
    "causal-lm": AutoModelForCausalLM,
    "sequence-classification": AutoModelForSequenceClassification,
}


def _looks_like_path(text: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else with a separator is meant as a path."""
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text


def resolve_pretrained(source: str | os.PathLike[str], what: str = "model") -> str:
    """Return a local directory as an absolute path, or a hub id unchanged; reject missing paths."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise ElmEvalError(f"{what} path {text!r} is a file; expected a save_pretrained directory")
    if _looks_like_path(text) or isinstance(source, Path):
        raise ElmEvalError(f"{what} directory {text!r} not found")
    return text


def model_name(source: ModelSource, name: str | None = None) -> str:
    """A short label for reports: the explicit name, a directory's base name, a hub id, or a class name."""
    if name:
        return name
    if isinstance(source, torch.nn.Module):
        return type(source).__name__
    text = os.fspath(source).rstrip("/")
    return Path(text).name if Path(text).expanduser().is_dir() else text


def load_model(
    source: ModelSource, head: Head = "base", *, require_head: bool = True, **kwargs: Any
) -> torch.nn.Module:
    """Load ``source`` with the Auto class for ``head``; a module passed in is returned unchanged.

    Missing LM-head weights are an error (unless ``require_head`` is False, as for timing), because
    a randomly initialised LM head yields a meaningless perplexity rather than a failure. Extra
    ``kwargs`` go to ``from_pretrained`` (for example ``num_labels``).
    """
    if isinstance(source, torch.nn.Module):
        return source
    target = resolve_pretrained(source)
    auto = _AUTO_CLASSES[head]
    try:
        model, info = auto.from_pretrained(target, output_loading_info=True, **kwargs)
    except OSError as exc:
        raise ElmEvalError(f"could not load model {target!r}: {exc}") from exc
    except ValueError as exc:
        raise ElmEvalError(f"model {target!r} cannot be loaded as {head}: {exc}") from exc
    missing = sorted(info.get("missing_keys", ()))
    if require_head and head in ("masked-lm", "causal-lm") and missing:
        raise ElmEvalError(
            f"model {target!r} has no trained {head} head (missing weights: {', '.join(missing[:4])}"
            f"{', ...' if len(missing) > 4 else ''}); a randomly initialised head gives no meaningful perplexity"
        )
    return model


def reload_with_head(model: PreTrainedModel, head: Head, **kwargs: Any) -> torch.nn.Module:
    """Save an in-memory model to a temporary directory and load it back with the Auto class for ``head``.

    This makes "a model object" and "its save_pretrained directory" the same input by
    construction: both then go through ``from_pretrained`` and get the same modules and weights.
    """
    with tempfile.TemporaryDirectory(prefix="elm-eval-") as tmp:
        model.save_pretrained(tmp)
        return load_model(tmp, head, require_head=False, **kwargs)


def load_tokenizer(source: TokenizerSource) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a directory or hub id; a tokenizer object passed in is returned unchanged."""
    if isinstance(source, PreTrainedTokenizerBase):
        return source
    target = resolve_pretrained(source, "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(target)
    except (OSError, ValueError) as exc:
        raise ElmEvalError(f"could not load tokenizer {target!r}: {exc}") from exc


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present; an explicit CUDA request without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ElmEvalError(f"device {device!r} requested but CUDA is not available")
    return resolved


@contextlib.contextmanager
def evaluation_mode(module: torch.nn.Module, device: torch.device) -> Iterator[torch.nn.Module]:
    """Eval mode on ``device`` for the duration, then the caller's train/eval mode again (so an
    evaluation in the middle of someone's training loop does not silently switch off dropout).
    The module stays on ``device``."""
    was_training = module.training
    module.eval().to(device)
    try:
        yield module
    finally:
        module.train(was_training)


def forward_kwargs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep only the batch entries the model's forward accepts (DistilBERT takes no token_type_ids)."""
    params = inspect.signature(model.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return batch
    return {key: value for key, value in batch.items() if key in params}


def output_logits(output: Any, model: torch.nn.Module) -> torch.Tensor:
    """Logits from a model's output (an HF output object or a bare tensor), or a clear error."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None:
        raise ElmEvalError(
            f"{type(model).__name__} returned no logits; it has no prediction head for this evaluation "
            "(load it with the matching AutoModelFor... class or pass a model with a head)"
        )
    return logits


def is_pretrained(model: torch.nn.Module) -> bool:
    return isinstance(model, PreTrainedModel)
