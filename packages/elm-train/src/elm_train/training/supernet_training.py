"""Supernet distillation with the dynamic dimension (METHOD.md sections 2a and 4, step 1).

One uniformly sampled path per optimizer step is distilled from the teacher; every
``pca_every`` steps the sampled FFNs' pre-activations feed a PCA count, and at each epoch's end
the candidates with the highest mean count grow by one increment. Everything comes in as
arguments (space, teacher, data, settings, output directory, metrics sink), so this runs the same
inside the pipeline and from a user's own script.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import elm_space
from elm_distill import DistillationLoss
from elm_space import Architecture, Family, SearchSpace
from elm_train.config import KDConfig, SupernetStageConfig
from elm_train.models import ElmSupernet, GrowthRecord, HeadName, ModelSettings, reset_optimizer_slices
from elm_train.runtime import distributed as dist
from elm_train.runtime.checkpoint import write_json_atomic
from elm_train.runtime.monitor import engine_write
from elm_train.training import batches
from elm_train.training.engine import mixed_precision_masters
from elm_train.training.kd import TeacherFeatures, build_kd_loss, kind_eta, student_features, uses_logits
from elm_train.training.loop import LoopSettings, TrainLoop
from elm_train.training.pca import PcaTracker, pca_count, real_tokens

WEIGHTS_FILE = "supernet.safetensors"
SPACE_FILE = "space.json"
WIDTHS_FILE = "widths.json"


class SupernetKD(nn.Module):
    """The supernet and the distillation projections, trained together by one engine.

    For the causal family the path also runs the supernet's (tied) LM head: its logits are
    distilled from the teacher's, and ``lm_weight`` adds the plain next-token loss.
    """

    def __init__(self, supernet: ElmSupernet, objective: DistillationLoss, lm_weight: float = 0.0) -> None:
        super().__init__()
        self.supernet = supernet
        self.objective = objective
        self.lm_weight = lm_weight
        causal = supernet.space.backbone.family is Family.CAUSAL
        self.head: HeadName = "causal_lm" if causal and (lm_weight > 0 or uses_logits(objective)) else "none"

    def student(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, arch: Architecture, **kwargs: Any
    ) -> Any:
        """The path's output with what distillation reads (hidden states, and logits if needed)."""
        return self.supernet(
            input_ids,
            arch=arch,
            attention_mask=attention_mask,
            head=self.head,
            output_hidden_states=True,
            **kwargs,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        arch: Architecture,
        teacher: Any,
        want_ffn: bool,
    ) -> tuple[torch.Tensor, dict[str, float], tuple[torch.Tensor, ...] | None]:
        labels = input_ids.masked_fill(attention_mask == 0, -100) if self.lm_weight > 0 else None
        out = self.student(
            input_ids, attention_mask, arch, labels=labels, output_ffn_pre_activations=want_ffn
        )
        result = self.objective(student_features(out), teacher, attention_mask)
        terms = result.as_floats()
        loss = result.total
        if labels is not None:
            loss = loss + self.lm_weight * out.loss
            terms["lm"] = float(out.loss.detach())
        return loss, terms, out.ffn_pre_activations


def build_supernet_kd(
    space: SearchSpace,
    kd: KDConfig,
    lm_weight: float,
    teacher_width: int,
    teacher_layers: int,
    seed: int,
    model: ModelSettings | None = None,
) -> SupernetKD:
    """A freshly initialised supernet (seeded) with its distillation objective."""
    torch.manual_seed(seed)
    supernet = ElmSupernet(space, model)
    objective = build_kd_loss(kd, space, teacher_width, teacher_layers, "supernet.kd")
    return SupernetKD(supernet, objective, lm_weight)


def drop_unsampled_gradients(supernet: ElmSupernet, arch: Architecture) -> None:
    """Set the gradients of every candidate ``arch`` did not sample to None (see
    :meth:`SupernetTraining.before_optimizer_step`; ``scripts/gpu_check.py`` checks it on a GPU)."""
    for i, layer in enumerate(supernet.layers):
        for j, block in enumerate(layer):
            if j != arch.layers[i].candidate:
                for p in block.parameters():
                    p.grad = None


def default_grow_count(space: SearchSpace, epochs: int) -> int:
    """The reference's num_add = num_layers * average_add_times (3) * type_blocks // epochs, at least 1.

    ``type_blocks`` is the number of candidates of a layer, both kinds together (12 in the paper
    spaces: 12 * 3 * 12 // 10 = 43 for elm-small, 21 for elm-tiny, 10 for elm-micro), so over a
    run each candidate grows about 3 times on average, budget permitting.
    """
    candidates = max(len(layer) for layer in space.layers)
    return max(1, space.num_layers * 3 * candidates // epochs)


def _widths(space: SearchSpace) -> list[list[int]]:
    return [[c.ffn_width for c in layer] for layer in space.layers]


class SupernetTraining(TrainLoop):
    """The supernet's training loop; ``train()`` runs it (resuming from ``out_dir`` if it can)."""

    stage = "supernet"

    def __init__(
        self,
        space: SearchSpace,
        teacher: TeacherFeatures,
        train: datasets.Dataset,
        settings: SupernetStageConfig,
        loop: LoopSettings,
        *,
        model: ModelSettings | None = None,
    ) -> None:
        self.cfg = settings
        self.space = space
        self.teacher = teacher
        causal = space.backbone.family is Family.CAUSAL
        self.model = build_supernet_kd(
            space,
            settings.kd,
            settings.lm_weight_for(causal),
            teacher.width,
            teacher.num_layers,
            loop.seed,
            model,
        )
        self.tracker = PcaTracker()
        self.widths = [_widths(space)]
        self.arch: Architecture | None = None
        super().__init__(self.model, train, settings.optim, loop)

    @property
    def supernet(self) -> ElmSupernet:
        return self.model.supernet

    @property
    def grown_pairs(self) -> int:
        """(layer, candidate) FFNs wider now than at the start."""
        return sum(
            1
            for a, b in zip(self.widths[0], self.widths[-1], strict=True)
            for x, y in zip(a, b, strict=True)
            if x != y
        )

    def begin_step(self, step: int) -> None:
        self.arch = elm_space.sample(self.space, batches.step_rng(self.seed, "path", step))

    def micro_loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        assert self.arch is not None
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        teacher = self.teacher(input_ids, mask)
        want_ffn = self.cfg.dynamic.enabled and step % self.cfg.dynamic.pca_every == 0
        loss, terms, pre = self.engine(input_ids, mask, self.arch, teacher, want_ffn)
        if pre is not None:
            for layer, (choice, features) in enumerate(zip(self.arch.layers, pre, strict=True)):
                eta = kind_eta(choice.kind, self.cfg.dynamic.eta_bert, self.cfg.dynamic.eta_mobile)
                self.tracker.add(layer, choice.candidate, pca_count(real_tokens(features, mask), eta))
        terms.pop("total", None)
        path_params = float(elm_space.count_params(self.arch))  # the sampled path's size
        return loss, {**terms, "path_params": path_params, "arch": self.arch.to_string()}

    def before_optimizer_step(self, step: int) -> None:
        """Unsampled candidates get no gradient at all, so AdamW neither decays nor moves them.

        DeepSpeed fills missing gradients with zeros (for ranks whose graphs differ); with a
        torch optimizer under ZeRO-0 setting them back to None restores single-path semantics.
        """
        assert self.arch is not None
        drop_unsampled_gradients(self.supernet, self.arch)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        dyn = self.cfg.dynamic
        if not dyn.enabled or epoch == self.cfg.optim.epochs - 1:
            return {}  # after the last epoch a grown slice would never be trained
        limit = dyn.grow_per_epoch or default_grow_count(self.space, self.cfg.optim.epochs)
        candidates = max(len(layer) for layer in self.space.layers)
        tracker = self.tracker.combined_over_ranks(self.space.num_layers, candidates)
        means = {f"{layer}:{cand}": round(v, 3) for (layer, cand), v in sorted(tracker.means().items())}
        new_space, grown = elm_space.grow_ranked(self.space, tracker.ranking(), limit)
        if grown:
            record = self.supernet.grow(new_space, torch.Generator().manual_seed(self.seed + epoch))
            self._reset_optimizer(record)
            self.space = new_space
        step = (epoch + 1) * self.per_epoch - 1
        widths = [
            (
                f"supernet/growth/ffn_width/layer{layer}.candidate{cand}",
                new_space.layers[layer][cand].ffn_width,
                step,
            )
            for layer, cand in grown
        ]
        engine_write(self.engine, [("supernet/growth/pairs_grown", len(grown), step), *widths])
        self.tracker.reset()
        self.widths.append(_widths(self.space))
        if dist.world_size() > 1:
            dist.check_same_on_all_ranks(f"the supernet after epoch {epoch}'s growth", self.state_digest())
        return {
            "grown": [list(g) for g in grown],
            "pca_means": means,
            "mean_params": elm_space.mean_params(self.space),
        }

    def state_digest(self) -> str:
        """SHA-256 of the space and every supernet weight this rank holds in full (ZeRO-3 shards
        are skipped): equal on all ranks unless they diverged."""
        digest = hashlib.sha256(self.space.model_dump_json().encode())
        for name, param in self.supernet.named_parameters():
            if hasattr(param, "ds_id"):  # a ZeRO-3 partition, different on every rank by design
                continue
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def _reset_optimizer(self, record: GrowthRecord) -> None:
        reset_grown_slices(self.optimizer, self.supernet, record)

    def extra_state(self) -> dict[str, Any]:
        return {
            "space": self.space.model_dump(mode="json"),
            "pca": self.tracker.to_json(),
            "widths": self.widths,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.space = SearchSpace.model_validate(state["space"])
        self.supernet.space = self.space
        self.tracker = PcaTracker.from_json(state["pca"])
        self.widths = state["widths"]


def reset_grown_slices(optimizer: Any, supernet: nn.Module, record: GrowthRecord) -> None:
    """After ``supernet.grow``: the fresh slices start with zero moments, under any ZeRO stage and
    precision (``optimizer`` is the one DeepSpeed returned). Under bf16 or fp16 the optimizer's fp32
    master copies of the slices take the fresh values too; else the next step would copy the old
    (decayed) values back over them."""
    from deepspeed.utils import (
        safe_get_full_fp32_param,
        safe_get_full_optimizer_state,
        safe_set_full_fp32_param,
        safe_set_full_optimizer_state,
    )

    params = dict(supernet.named_parameters())
    masters = mixed_precision_masters(optimizer)
    if masters:  # ZeRO-0 under bf16/fp16: the torch optimizer sees only the fp32 copies
        inner = optimizer.optimizer
        for change in record.slices:
            param, length = params[change.name], change.stop - change.start
            master = masters[id(param)]
            fresh = param.detach().narrow(change.dim, change.start, length)
            master.data.narrow(change.dim, change.start, length).copy_(fresh.float())
            for value in inner.state.get(master, {}).values():
                if torch.is_tensor(value) and value.shape == master.shape:
                    value.narrow(change.dim, change.start, length).zero_()
        return
    partitioned = any(safe_get_full_fp32_param(p) is not None for p in params.values())
    if not partitioned:
        reset_optimizer_slices(optimizer, supernet, record)
        return
    _relink_optimizer_state(optimizer)
    for change in record.slices:
        param, length = params[change.name], change.stop - change.start
        full = safe_get_full_fp32_param(param)
        fresh = param.detach().narrow(change.dim, change.start, length).float()
        full.narrow(change.dim, change.start, length).copy_(fresh.to(full.device))
        safe_set_full_fp32_param(param, full)  # only the fresh slice changes; the rest keeps fp32
        for key in ("exp_avg", "exp_avg_sq"):
            state = safe_get_full_optimizer_state(param, key)
            if state is not None:
                state.narrow(change.dim, change.start, length).zero_()
                safe_set_full_optimizer_state(param, state, key)


def _relink_optimizer_state(optimizer: Any) -> None:
    """ZeRO 1-2 link each parameter to its slice of the flat optimizer state once, right after the
    first optimizer step of the first parameter group, when the other groups have no state yet: the
    parameters of the no-decay group (biases, norms) stay linked to nothing, and DeepSpeed's
    ``safe_get_full_optimizer_state`` fails on them ("exp_avg not found in optimizer state
    fragment"). Linking again reads the state as it is now."""
    if getattr(optimizer, "_hp_optimizer_states_linked", False):
        optimizer._hp_optimizer_states_linked = False
        optimizer._lazy_init_hp_params_optimizer_state()


@dataclass(frozen=True)
class TrainedSupernet:
    """What supernet training leaves: the model (with its projections) and the grown space."""

    model: SupernetKD
    space: SearchSpace
    widths: list[list[list[int]]]
    """FFN widths per (layer, candidate) at the start and after each epoch."""


def save_supernet(trained: TrainedSupernet, directory: Path) -> None:
    """Weights (safetensors), grown space and width history into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in trained.model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    elm_space.save(trained.space, directory / SPACE_FILE)
    kinds = [c.kind.value for c in trained.space.layers[0]]
    write_json_atomic(directory / WIDTHS_FILE, {"history": trained.widths, "kinds": kinds})


def load_supernet(
    directory: Path,
    kd: KDConfig,
    lm_weight: float,
    teacher_width: int,
    teacher_layers: int,
    seed: int,
    model_settings: ModelSettings | None = None,
) -> TrainedSupernet:
    """A saved supernet, in eval mode; ``kd`` and the teacher's shape rebuild its projections."""
    space = elm_space.load(SearchSpace, directory / SPACE_FILE)
    model = build_supernet_kd(space, kd, lm_weight, teacher_width, teacher_layers, seed, model_settings)
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    model.eval()
    widths = json.loads((directory / WIDTHS_FILE).read_text())["history"]
    return TrainedSupernet(model=model, space=space, widths=widths)
