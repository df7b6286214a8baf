"""Model cards: the README.md, with a Hugging Face metadata header, of every exported model directory.

A card says what the model is (the architecture string and a per-layer table with exact parameter
counts from elm-space), how it was made (teacher, data, training steps), how good and fast it is
when that is known (scores, latency), how to load it with plain transformers, and its license.
The information is a pydantic :class:`ModelCardInfo`; :func:`write_model_card` renders it. Nothing
here needs torch: the counts are elm-space arithmetic, so a card can be written for any
architecture, trained or not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, field_validator

import elm_space
from elm_space import Architecture, BlockKind
from elm_train.runtime.errors import ElmTrainError
from elm_train.runtime.fsio import write_text_atomic

CARD_NAME = "README.md"

Head = Literal["none", "masked_lm", "causal_lm", "classification", "question_answering"]
ModelFormat = Literal["elm", "bert"]
"""``elm``: saved ElmConfig/ElmModel (custom code, ``trust_remote_code=True`` without elm-train);
``bert``: exported with :func:`elm_train.models.export_bert`, stock transformers BERT classes."""

_HEADS: dict[str, tuple[str, str]] = {
    # head -> (pipeline tag, Auto class)
    "masked_lm": ("fill-mask", "AutoModelForMaskedLM"),
    "causal_lm": ("text-generation", "AutoModelForCausalLM"),
    "classification": ("text-classification", "AutoModelForSequenceClassification"),
    "question_answering": ("question-answering", "AutoModelForQuestionAnswering"),
    "none": ("feature-extraction", "AutoModel"),
}


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LayerRow(_Card):
    """One row of the architecture table."""

    index: NonNegativeInt
    block: BlockKind
    attention_width: int
    heads: int
    ffn_width: int
    inner_size: int | None = None
    parameters: int


class Score(_Card):
    """One measured score, e.g. accuracy on tweet-sentiment or perplexity on PTB's test split."""

    name: str
    value: float
    metric: str | None = None
    """Metric id for the metadata (accuracy, perplexity, ...); defaults to ``name``."""
    dataset: str | None = None
    task: str | None = None
    """Task type for the metadata (text-classification, fill-mask, ...); defaults to the pipeline tag."""


class ModelCardInfo(_Card):
    """Everything a card says. Build it with :meth:`for_architecture` to get the table and counts."""

    name: str
    """Title of the card and ``model-index`` name."""
    architecture: str
    """``Architecture.to_string()``, e.g. ``0:B528h12|3:M132/264h4``."""
    family: Literal["masked", "causal"] = "masked"
    hidden_size: int
    vocab_size: int
    embedding: str
    """E.g. ``plain, 30522 x 256`` or ``factorized, 30522 x 128 -> 256``."""
    layers: list[LayerRow] = Field(min_length=1)
    embedding_parameters: int
    head_parameters: int = 0
    parameters: int
    """The model's total, head included (exact, as ``sum(p.numel())`` of the saved model)."""
    head: Head = "masked_lm"
    model_format: ModelFormat = "elm"
    teacher: str | None = None
    data: str | None = None
    training_steps: NonNegativeInt | None = None
    training: str | None = None
    """Free text on how it was trained (losses, schedule)."""
    scores: list[Score] = Field(default_factory=list)
    latency_ms: PositiveFloat | None = None
    latency_setting: str | None = None
    """How latency was measured (batch, sequence length, device, threads)."""
    deployment: list[str] = []
    """Markdown lines on the deployment files (ONNX fp32 and int8) and their figures, if any."""
    license: str = "apache-2.0"
    model_id: str | None = None
    """Hub id or path used in the loading snippet; defaults to the directory's name."""
    tags: list[str] = Field(
        default_factory=lambda: ["elm", "knowledge-distillation", "neural-architecture-search"]
    )
    load_snippet: str | None = None
    """Replaces the generated "how to load" code."""

    @field_validator("scores", mode="before")
    @classmethod
    def _scores_from_mapping(cls, value: Any) -> Any:
        """``{"name": value}`` is accepted for scores without dataset or metric details."""
        if isinstance(value, dict):
            return [{"name": key, "value": score} for key, score in value.items()]
        return value

    @classmethod
    def for_architecture(
        cls, arch: Architecture, *, name: str, head: Head = "masked_lm", num_labels: int = 2, **fields: Any
    ) -> Self:
        """A card for ``arch``: string, table and exact counts from elm-space; ``fields`` add the rest.

        ``parameters`` may be given (e.g. a BERT export, which holds one all-zero segment row more
        than a model without segment embeddings); otherwise it is elm-space's count.
        """
        breakdown = elm_space.param_breakdown(arch, head, num_labels)
        backbone = arch.backbone
        if backbone.embedding.kind == "factorized":
            embedding = (
                f"factorized, {backbone.vocab_size} x {backbone.embedding_width} -> {backbone.hidden_size}"
            )
        else:
            embedding = f"plain, {backbone.vocab_size} x {backbone.hidden_size}"
        rows = [
            LayerRow(
                index=index,
                block=layer.kind,
                attention_width=layer.attention_width(backbone.hidden_size),
                heads=layer.heads,
                ffn_width=layer.ffn_width,
                inner_size=layer.inner_size,
                parameters=count,
            )
            for index, (layer, count) in enumerate(zip(arch.layers, breakdown.layers, strict=True))
        ]
        fields.setdefault("parameters", breakdown.total)
        return cls(
            name=name,
            architecture=arch.to_string(),
            family=backbone.family.value,
            hidden_size=backbone.hidden_size,
            vocab_size=backbone.vocab_size,
            embedding=embedding,
            layers=rows,
            embedding_parameters=breakdown.embedding,
            head_parameters=breakdown.head,
            head=head,
            **fields,
        )

    @property
    def pipeline_tag(self) -> str:
        return _HEADS[self.head][0]

    @property
    def auto_class(self) -> str:
        return _HEADS[self.head][1]


def metadata(info: ModelCardInfo) -> dict[str, Any]:
    """The YAML header: the fields the Hugging Face hub reads."""
    header: dict[str, Any] = {
        "library_name": "transformers",
        "license": info.license,
        "pipeline_tag": info.pipeline_tag,
        "tags": list(info.tags),
    }
    if info.model_format == "elm":
        header["tags"].append("custom_code")
    if info.scores:
        header["model-index"] = [
            {
                "name": info.name,
                "results": [
                    {
                        "task": {"type": score.task or info.pipeline_tag},
                        "dataset": {"name": score.dataset or score.name, "type": score.dataset or score.name},
                        "metrics": [
                            {"type": score.metric or score.name, "value": score.value, "name": score.name}
                        ],
                    }
                    for score in info.scores
                ],
            }
        ]
    return header


def load_snippet(info: ModelCardInfo, model_id: str) -> str:
    """Python that loads the model with plain transformers.

    For an ELM model the tokenizer call says ``trust_remote_code=True`` too, although the tokenizer
    is a stock one (``tokenizer_class`` in its ``tokenizer_config.json``): transformers 5's
    ``AutoTokenizer`` reads the folder's ``config.json`` before the tokenizer's own config, and one
    naming custom code (``auto_map``) makes it ask "Do you wish to run the custom code? [y/N]" and,
    refused, print "You are using a model of type elm to instantiate a model of type ``". With the
    flag the first load prints neither (tested in a fresh interpreter with stdin closed).
    """
    if info.load_snippet is not None:
        return info.load_snippet
    remote = ", trust_remote_code=True" if info.model_format == "elm" else ""
    return (
        f"from transformers import {info.auto_class}, AutoTokenizer\n\n"
        f'tokenizer = AutoTokenizer.from_pretrained("{model_id}"{remote})\n'
        f'model = {info.auto_class}.from_pretrained("{model_id}"{remote})\n'
    )


def _number(value: int) -> str:
    return f"{value:,}"


def render(info: ModelCardInfo, model_id: str) -> str:
    """The card's full text: YAML header, then Markdown."""
    header = yaml.safe_dump(metadata(info), sort_keys=False, allow_unicode=True)
    kind = "masked" if info.family == "masked" else "causal"
    lines = [
        "---",
        header.rstrip("\n"),
        "---",
        "",
        f"# {info.name}",
        "",
        f"A compact {kind} language model found by ELM (elastic architecture search) and trained by "
        "knowledge distillation with the ELM toolkit.",
        "",
        "## Architecture",
        "",
        f"`{info.architecture}`",
        "",
        f"- hidden size {info.hidden_size}, vocabulary {_number(info.vocab_size)}, embedding {info.embedding}",
        f"- {len(info.layers)} layers; **{_number(info.parameters)} parameters** "
        f"(embedding {_number(info.embedding_parameters)}, head {_number(info.head_parameters)})",
        "",
        "| layer | block | attention width | heads | inner size | FFN width | parameters |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in info.layers:
        inner = str(row.inner_size) if row.inner_size is not None else "-"
        lines.append(
            f"| {row.index} | {row.block.value} | {row.attention_width} | {row.heads} | {inner} "
            f"| {row.ffn_width} | {_number(row.parameters)} |"
        )
    lines += ["", "## Training", ""]
    facts = [
        ("Teacher", info.teacher),
        ("Data", info.data),
        ("Training steps", _number(info.training_steps) if info.training_steps is not None else None),
        ("How", info.training),
    ]
    known = [f"- {label}: {value}" for label, value in facts if value is not None]
    lines += known or ["Not recorded."]
    lines += ["", "## Results", ""]
    if info.scores:
        lines += ["| score | dataset | value |", "|---|---|---:|"]
        lines += [f"| {s.name} | {s.dataset or '-'} | {s.value:.4g} |" for s in info.scores]
    else:
        lines.append("No scores were measured.")
    if info.latency_ms is not None:
        setting = f" ({info.latency_setting})" if info.latency_setting else ""
        lines += ["", f"Latency: {info.latency_ms:.2f} ms{setting}."]
    if info.deployment:
        lines += ["", "## Deployment (ONNX)", "", *info.deployment]
    lines += ["", "## How to load", "", "```python", load_snippet(info, model_id).rstrip("\n"), "```", ""]
    if info.model_format == "elm":
        lines += [
            "The model code ships in this directory (`trust_remote_code=True`); with `elm-train` "
            "installed the same call works without it.",
            "",
        ]
    lines += ["## License", "", f"{info.license}", ""]
    return "\n".join(lines)


def write_model_card(directory: str | Path, info: ModelCardInfo) -> Path:
    """Write ``directory/README.md`` for ``info`` and return its path (the directory must exist)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no model directory {directory}")
    path = directory / CARD_NAME
    write_text_atomic(path, render(info, info.model_id or directory.name))  # a card is never half-written
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The YAML header of a card written by :func:`write_model_card`."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise ElmTrainError(f"{path} has no metadata header (a model card starts with a '---' YAML block)")
    header, _, _ = text[4:].partition("\n---\n")
    return yaml.safe_load(header)
