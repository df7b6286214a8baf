"""The elastic supernet: every candidate block of every layer, one path run per forward.

Each layer holds its candidates with separate weights (METHOD.md section 1). A candidate's FFN
is allocated at its maximum width and run at the space's current width, so growing it never
reallocates. The blocks, embedding and heads are the static model's own modules
(``modeling_elm``), which is why a path's output equals the extracted model's output exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from elm_space import Architecture, SearchSpace, SpaceError
from elm_train.models.modeling_elm import (
    ElmEmbeddings,
    ElmForCausalLM,
    ElmForMaskedLM,
    ElmForSequenceClassification,
    ElmLMHead,
    ElmModel,
    ElmModelOutput,
    ElmOutputWithLogits,
    ElmPooler,
    ElmPreTrainedModel,
    OutputRequest,
    causal_lm_logits,
    classification_loss,
    encode,
    init_elm_weights,
    make_block,
    masked_lm_logits,
    with_logits,
)
from elm_train.models.settings import ModelSettings, elm_config
from elm_train.runtime.errors import ElmTrainError

HeadName = Literal["none", "masked_lm", "causal_lm", "classification"]


class SliceChange(BaseModel):
    """One parameter slice that growth re-initialised: ``param.narrow(dim, start, stop - start)``."""

    model_config = ConfigDict(frozen=True)

    name: str
    """Parameter name as ``ElmSupernet.named_parameters()`` gives it."""
    dim: int
    start: int
    stop: int


class GrownCandidate(BaseModel):
    model_config = ConfigDict(frozen=True)

    layer: int
    candidate: int
    old_width: int
    new_width: int


class GrowthRecord(BaseModel):
    """What ``ElmSupernet.grow`` changed, so a trainer can reset the same slices elsewhere
    (optimizer moments, DeepSpeed fp32 master weights)."""

    model_config = ConfigDict(frozen=True)

    grown: tuple[GrownCandidate, ...] = ()
    slices: tuple[SliceChange, ...] = ()


def _copy_leading(dst: nn.Module, src: nn.Module) -> None:
    """Copy each of ``src``'s parameters into ``dst``'s same-named one, cut to dst's shape.

    Every elastic dimension is a leading range (FFN rows/columns), so the leading slice of each
    supernet tensor is exactly the static model's tensor.
    """
    sources = dict(src.named_parameters())
    with torch.no_grad():
        for name, param in dst.named_parameters():
            source = sources[name]
            param.copy_(source[tuple(slice(0, n) for n in param.shape)])


class ElmSupernet(nn.Module):
    """All candidates of a search space; ``forward(..., arch=...)`` runs one path.

    Shared across paths: the embedding, the LM head (tied to the token table), and optionally a
    pooler with one classifier per task (``tasks`` maps task name to number of labels; 1 means
    regression).
    """

    def __init__(
        self,
        space: SearchSpace,
        settings: ModelSettings | None = None,
        tasks: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or ModelSettings()
        self.space = space
        template = elm_config(self._first_architecture(space), self.settings)
        self.embeddings = ElmEmbeddings(template)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                make_block(template, c.kind.value, c.inner_size, c.max_ffn_width) for c in candidates
            )
            for candidates in space.layers
        )
        self.lm_head = ElmLMHead(template)
        tasks = dict(tasks or {})
        for name, labels in tasks.items():
            if not name.isidentifier() or labels < 1:
                raise ElmTrainError(
                    f"tasks[{name!r}]={labels}: names must be identifiers and label counts >= 1"
                )
        self.task_labels = tasks
        self.pooler = ElmPooler(template) if tasks else None
        dropout = self.settings.classifier_dropout
        self.classifier_dropout = nn.Dropout(
            self.settings.hidden_dropout_prob if dropout is None else dropout
        )
        self.classifiers = nn.ModuleDict(
            {name: nn.Linear(space.backbone.hidden_size, n) for name, n in tasks.items()}
        )
        self.apply(partial(init_elm_weights, std=self.settings.initializer_range))

    @staticmethod
    def _first_architecture(space: SearchSpace) -> Architecture:
        return space.architecture([space.options(i)[0] for i in range(space.num_layers)])

    def check(self, arch: Architecture) -> None:
        """Raise SpaceError unless ``arch`` is a path of the current space.

        Head counts are free (any divisor of the attention width, as CKA selection produces
        them); candidate, kind, inner size and FFN width must match the space.
        """
        if arch.backbone != self.space.backbone:
            raise SpaceError(
                f"architecture backbone {arch.backbone!r} differs from the supernet's {self.space.backbone!r}"
            )
        if arch.num_layers != self.space.num_layers:
            raise SpaceError(
                f"architecture has {arch.num_layers} layers, the supernet {self.space.num_layers}"
            )
        for i, (choice, candidates) in enumerate(zip(arch.layers, self.space.layers, strict=True)):
            if choice.candidate >= len(candidates):
                raise SpaceError(
                    f"layers[{i}].candidate={choice.candidate}: layer {i} has {len(candidates)} candidates"
                )
            spec = candidates[choice.candidate]
            for field in ("kind", "inner_size", "ffn_width"):
                if getattr(choice, field) != getattr(spec, field):
                    raise SpaceError(
                        f"layers[{i}].{field}={getattr(choice, field)!r} but the supernet's candidate "
                        f"{choice.candidate} has {field}={getattr(spec, field)!r}"
                    )

    def path(self, arch: Architecture) -> list[tuple[nn.Module, int, int]]:
        """(block, ffn_width, heads) per layer, after checking ``arch`` against the space."""
        self.check(arch)
        return [
            (self.layers[i][choice.candidate], choice.ffn_width, choice.heads)
            for i, choice in enumerate(arch.layers)
        ]

    def _head_kind(self, head: HeadName) -> HeadName:
        family = self.space.backbone.family.value
        if (head == "masked_lm" and family != "masked") or (head == "causal_lm" and family != "causal"):
            raise ElmTrainError(f"head={head!r} does not fit the space's {family} family")
        if head not in ("none", "masked_lm", "causal_lm", "classification"):
            raise ElmTrainError(f"head={head!r} is not one of none, masked_lm, causal_lm, classification")
        return head

    def _task(self, task: str | None) -> str:
        if not self.task_labels:
            raise ElmTrainError("this supernet has no classifiers; build it with tasks={name: num_labels}")
        if task is None:
            if len(self.task_labels) != 1:
                raise ElmTrainError(f"pass task= one of {sorted(self.task_labels)}")
            return next(iter(self.task_labels))
        if task not in self.task_labels:
            raise ElmTrainError(f"unknown task {task!r}; the supernet has {sorted(self.task_labels)}")
        return task

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        arch: Architecture,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        head: HeadName = "none",
        task: str | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        output_ffn_pre_activations: bool = False,
        output_attention_contexts: bool = False,
    ) -> ElmModelOutput | ElmOutputWithLogits:
        """The path ``arch``'s output: ElmModelOutput for head "none", else ElmOutputWithLogits,
        exactly as the extracted static model returns them."""
        head = self._head_kind(head)
        encoded = encode(
            self.embeddings,
            self.path(arch),
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            request=OutputRequest(
                attentions=output_attentions,
                hidden_states=output_hidden_states,
                ffn_pre_activations=output_ffn_pre_activations,
                attention_contexts=output_attention_contexts,
            ),
        )
        if head == "none":
            return encoded
        hidden = encoded.last_hidden_state
        weight = self.embeddings.word_embeddings.weight
        if head == "masked_lm":
            loss, logits = masked_lm_logits(self.lm_head, weight, hidden, labels)
        elif head == "causal_lm":
            loss, logits = causal_lm_logits(self.lm_head, weight, hidden, labels)
        else:
            name = self._task(task)
            assert self.pooler is not None
            logits = self.classifiers[name](self.classifier_dropout(self.pooler(hidden, attention_mask)))
            loss = classification_loss(logits, labels, self.task_labels[name], None)
        return with_logits(loss, logits, encoded)

    def extract(
        self,
        arch: Architecture,
        head: HeadName = "none",
        *,
        task: str | None = None,
        num_labels: int = 2,
        problem_type: str | None = None,
    ) -> ElmPreTrainedModel:
        """The static model of ``arch`` with this path's weights copied out.

        head "none" gives ElmModel, "masked_lm"/"causal_lm" the LM model (the supernet's LM
        head), "classification" ElmForSequenceClassification: with the supernet's pooler and
        ``task`` classifier when it has them, else a freshly initialised ``num_labels`` head.
        The result is in the supernet's train/eval mode.
        """
        head = self._head_kind(head)
        path = self.path(arch)
        if head == "classification" and self.task_labels:
            task = self._task(task)
            num_labels = self.task_labels[task]
            problem_type = problem_type or ("regression" if num_labels == 1 else None)
        config = elm_config(arch, self.settings, num_labels=num_labels, problem_type=problem_type)
        model_class = {
            "none": ElmModel,
            "masked_lm": ElmForMaskedLM,
            "causal_lm": ElmForCausalLM,
            "classification": ElmForSequenceClassification,
        }[head]
        model = model_class(config)
        encoder = model if isinstance(model, ElmModel) else model.elm
        _copy_leading(encoder.embeddings, self.embeddings)
        for static_block, (block, _, _) in zip(encoder.layers, path, strict=True):
            _copy_leading(static_block, block)
        if head in ("masked_lm", "causal_lm"):
            _copy_leading(model.lm_head, self.lm_head)
        elif head == "classification" and task is not None:
            assert self.pooler is not None
            _copy_leading(model.pooler, self.pooler)
            _copy_leading(model.classifier, self.classifiers[task])
        return model.train(self.training)

    def grow(self, new_space: SearchSpace, generator: torch.Generator | None = None) -> GrowthRecord:
        """Widen candidates to ``new_space``'s FFN widths, keeping the trained rows/columns.

        The new rows of dense1 and columns of dense2 are drawn fresh from N(0, initializer_range)
        (new dense1 biases are zero), replacing whatever weight decay left in those never-used
        slices; their gradients, if any, are zeroed. The record names every re-initialised slice
        (see ``reset_optimizer_slices``).
        """
        self._check_growth(new_space)
        std = self.settings.initializer_range
        grown, slices = [], []
        with torch.no_grad():
            for i, (old_layer, new_layer) in enumerate(zip(self.space.layers, new_space.layers, strict=True)):
                for j, (old, new) in enumerate(zip(old_layer, new_layer, strict=True)):
                    if new.ffn_width == old.ffn_width:
                        continue
                    grown.append(
                        GrownCandidate(layer=i, candidate=j, old_width=old.ffn_width, new_width=new.ffn_width)
                    )
                    prefix = f"layers.{i}.{j}.ffn."
                    for name, dim in (("dense1.weight", 0), ("dense1.bias", 0), ("dense2.weight", 1)):
                        change = SliceChange(
                            name=prefix + name, dim=dim, start=old.ffn_width, stop=new.ffn_width
                        )
                        slices.append(change)
                        param = self.get_parameter(change.name)
                        fresh = param.narrow(dim, change.start, change.stop - change.start)
                        if name.endswith("bias"):
                            fresh.zero_()
                        else:
                            fresh.normal_(0.0, std, generator=generator)
                        if param.grad is not None:
                            param.grad.narrow(dim, change.start, change.stop - change.start).zero_()
        self.space = new_space
        return GrowthRecord(grown=tuple(grown), slices=tuple(slices))

    def _check_growth(self, new_space: SearchSpace) -> None:
        if new_space.backbone != self.space.backbone or new_space.num_layers != self.space.num_layers:
            raise SpaceError("grow: the new space must have the supernet's backbone and layer count")
        for i, (old_layer, new_layer) in enumerate(zip(self.space.layers, new_space.layers, strict=True)):
            if len(old_layer) != len(new_layer):
                raise SpaceError(
                    f"grow: layer {i} has {len(new_layer)} candidates, the supernet {len(old_layer)}"
                )
            for j, (old, new) in enumerate(zip(old_layer, new_layer, strict=True)):
                for field in ("kind", "inner_size", "max_ffn_width"):
                    if getattr(old, field) != getattr(new, field):
                        raise SpaceError(f"grow: layers[{i}][{j}].{field} changed; only ffn_width may grow")
                if new.ffn_width < old.ffn_width:
                    raise SpaceError(
                        f"grow: layers[{i}][{j}].ffn_width would shrink from {old.ffn_width} to {new.ffn_width}"
                    )


def reset_optimizer_slices(optimizer: torch.optim.Optimizer, model: nn.Module, record: GrowthRecord) -> int:
    """Zero the optimizer state (e.g. AdamW's exp_avg, exp_avg_sq) of every grown slice.

    ``model`` is the module whose ``named_parameters()`` the record's names refer to (the
    supernet itself, not a wrapper). Per-parameter step counters cannot be reset per slice, so
    the new slices' first AdamW updates see the parameter's bias correction (close to 1 late in
    training). Returns how many state tensors were touched.
    """
    params = dict(model.named_parameters())
    touched = 0
    for change in record.slices:
        if change.name not in params:
            raise KeyError(f"{change.name} is not a parameter of {type(model).__name__}")
        param = params[change.name]
        for value in optimizer.state.get(param, {}).values():
            if torch.is_tensor(value) and value.shape == param.shape:
                value.narrow(change.dim, change.start, change.stop - change.start).zero_()
                touched += 1
    return touched
