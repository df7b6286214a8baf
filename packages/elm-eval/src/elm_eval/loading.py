"""Turn "a model" (a directory, a hub id, or an object already in memory) into a torch module.

Evaluators accept all three so a model found by search and a hand-made baseline pass through the
same code. Loading from a directory never touches the network; a hub id is only tried when the
string is not an existing path and does not look like one, so a typo in a path gives a
"not found" error rather than a confusing hub lookup.

Models whose ``config.json`` names a ``model_type`` of another package (the ELM models that
elm-train exports, ``model_type="elm"``) load once that package has registered the type with
transformers' Auto classes. elm-eval imports no such package by name: it loads whatever is
registered under the ``elm_eval.model_types`` entry-point group (elm-train registers ``elm``
there). Without that, ``trust_remote_code=True`` (``--trust-remote-code``) runs the modelling code
saved in the directory instead; elm-eval never runs it unless asked.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from elm_eval.errors import ElmEvalError, one_line

ENTRY_POINT_GROUP = "elm_eval.model_types"
"""Entry points in this group are imported before a model is loaded; importing one registers its
model types with transformers' Auto classes (elm-train: ``elm = "elm_train.models"``)."""


def _loader_errors() -> tuple[type[BaseException], ...]:
    """What transformers, safetensors and huggingface_hub raise for a directory they cannot load."""
    errors: list[type[BaseException]] = [OSError, ValueError, KeyError, TypeError, RuntimeError]
    with contextlib.suppress(ImportError):
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    with contextlib.suppress(ImportError):
        from huggingface_hub.errors import StrictDataclassError

        errors.append(StrictDataclassError)
    return tuple(errors)


_LOAD_ERRORS = _loader_errors()
_registered: dict[str, str] | None = None


def register_model_types() -> dict[str, str]:
    """Import every ``elm_eval.model_types`` entry point once; return ``{name: "ok" or the error}``.

    A plugin that fails to import is reported with a warning and skipped, so a broken extra package
    never stops the evaluation of ordinary models.
    """
    global _registered
    if _registered is None:
        _registered = {}
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry.load()
                _registered[entry.name] = "ok"
            except Exception as exc:  # a third-party plugin may fail in any way; it must not stop us
                _registered[entry.name] = f"{type(exc).__name__}: {one_line(exc, 200)}"
                warnings.warn(
                    f"elm-eval: model-type plugin {entry.name!r} ({entry.value}) failed to load: "
                    f"{_registered[entry.name]}",
                    RuntimeWarning,
                    stacklevel=2,
                )
    return dict(_registered)


ModelSource = str | os.PathLike[str] | torch.nn.Module
TokenizerSource = str | os.PathLike[str] | PreTrainedTokenizerBase
Head = Literal["base", "masked-lm", "causal-lm", "sequence-classification", "question-answering"]

_AUTO_CLASSES = {
    "base": AutoModel,
    "masked-lm": AutoModelForMaskedLM,
    "causal-lm": AutoModelForCausalLM,
    "sequence-classification": AutoModelForSequenceClassification,
    "question-answering": AutoModelForQuestionAnswering,
}


def _looks_like_path(text: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else with a separator is meant as a path."""
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text


def resolve_pretrained(source: str | os.PathLike[str], what: str = "model") -> str:
    """Return a local directory as an absolute path, or a hub id unchanged; reject missing paths."""
    text = os.fspath(source)
    if not text.strip():
        raise ElmEvalError(f"{what}: an empty path or hub id")
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


def _model_type(directory: str) -> str | None:
    try:
        config = json.loads(Path(directory, "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return model_type if isinstance(model_type, str) else None


def _register_if_needed(target: str) -> None:
    """Import the model-type plugins when ``target``'s model type is one transformers does not know
    (or ``target`` is a hub id), so loading a BERT or GPT-2 folder never pays for importing them."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = _model_type(target)
    unknown = model_type not in CONFIG_MAPPING if model_type is not None else not Path(target).is_dir()
    if unknown:
        register_model_types()


def _load_failure(target: str, head: str, exc: BaseException) -> ElmEvalError:
    text = one_line(exc)
    if "trust_remote_code" in text or "custom code" in text:
        model_type = _model_type(target)
        kind = f"model_type {model_type!r}" if model_type else "a model type"
        plugins = ", ".join(register_model_types()) or "none installed"
        return ElmEvalError(
            f"{target}: its config.json names {kind}, which no installed package registers "
            f"(model-type plugins: {plugins}); install the package that made the model (elm-train for "
            "ELM models), or pass --trust-remote-code (trust_remote_code=True) to run the modelling code "
            "saved in the folder"
        )
    if isinstance(exc, OSError):
        return ElmEvalError(f"{target}: could not load the model: {text}")
    return ElmEvalError(f"{target}: cannot be loaded as {head}: {text}")


def load_model(
    source: ModelSource,
    head: Head = "base",
    *,
    require_head: bool = True,
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> torch.nn.Module:
    """Load ``source`` with the Auto class for ``head``; a module passed in is returned unchanged.

    Missing LM-head weights are an error (unless ``require_head`` is False, as for timing), because
    a randomly initialised LM head yields a meaningless perplexity rather than a failure. Extra
    ``kwargs`` go to ``from_pretrained`` (for example ``num_labels``). Model types registered by
    plugins load as built-in ones; code saved in the directory runs only with ``trust_remote_code``.
    """
    if isinstance(source, torch.nn.Module):
        return source
    target = resolve_pretrained(source)
    _register_if_needed(target)
    auto = _AUTO_CLASSES[head]
    try:
        model, info = auto.from_pretrained(
            target, output_loading_info=True, trust_remote_code=trust_remote_code, **kwargs
        )
    except _LOAD_ERRORS as exc:
        raise _load_failure(target, head, exc) from exc
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


def load_tokenizer(source: TokenizerSource, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a directory or hub id; a tokenizer object passed in is returned unchanged."""
    if isinstance(source, PreTrainedTokenizerBase):
        return source
    target = resolve_pretrained(source, "tokenizer")
    _register_if_needed(target)
    try:
        return AutoTokenizer.from_pretrained(target, trust_remote_code=trust_remote_code)
    except _LOAD_ERRORS as exc:
        raise ElmEvalError(f"{target}: could not load the tokenizer: {one_line(exc)}") from exc


def check_device(device: str) -> str:
    """``device`` if it names a device torch knows (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``);
    ValueError otherwise (for pydantic validators: availability is checked when the work starts)."""
    if device == "auto":
        return device
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{device!r} is not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{device!r}: elm-eval runs on auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present; a device that is not there is an error."""
    try:
        check_device(device)
    except ValueError as exc:
        raise ElmEvalError(f"device {exc}") from None
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ElmEvalError(f"device {device!r} requested but CUDA is not available")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ElmEvalError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA devices")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ElmEvalError(f"device {device!r} requested but MPS is not available")
    return resolved


def model_positions(model: torch.nn.Module) -> int | None:
    """How many positions the model embeds (``max_position_embeddings`` or ``n_positions``), if known."""
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_positions(model: torch.nn.Module, length: int, what: str = "max_length") -> None:
    """ElmEvalError when ``length`` tokens do not fit the model's position embeddings."""
    limit = model_positions(model)
    if limit is not None and length > limit:
        raise ElmEvalError(f"{what}: {length} exceeds the model's {limit} position embeddings")


def model_vocab_size(model: torch.nn.Module) -> int | None:
    """Rows of the model's token-embedding table (``config.vocab_size`` when it has no table)."""
    embeddings = None
    with contextlib.suppress(AttributeError, NotImplementedError):
        embeddings = model.get_input_embeddings()  # type: ignore[operator]
    rows = getattr(embeddings, "num_embeddings", None)
    if isinstance(rows, int):
        return rows
    value = getattr(getattr(model, "config", None), "vocab_size", None)
    return value if isinstance(value, int) else None


def check_vocabulary(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> None:
    """ElmEvalError when the tokenizer can produce token ids the model has no embedding for."""
    rows = model_vocab_size(model)
    if rows is not None and len(tokenizer) > rows:
        raise ElmEvalError(
            f"tokenizer: it has {len(tokenizer)} tokens but the model's vocabulary has {rows}; "
            "ids from "
            f"{rows} up would index past the embedding table (use the tokenizer the model was trained with)"
        )


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
