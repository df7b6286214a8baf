"""Stage 6a: retrain the chosen subnet (and the hand-designed baseline) by distillation.

Both students are extracted from the supernet with its weights, then trained by the same loop,
budget and losses: the hidden-state distillation of the supernet stage plus a language-modelling
loss (masked tokens for the masked family, next tokens for the causal one), which trains the LM
head the perplexity evaluation reads. The baseline is all BERT blocks of one width and one head
count, the widest such path of the space that fits in the found model's parameter count, so the
comparison isolates the searched architecture.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import DataCollatorForLanguageModeling

import elm_space
from elm_distill import DistillationObjective
from elm_space import Architecture, BlockKind, SearchSpace
from elm_train import engine as dist
from elm_train.kd import build_objective, student_features
from elm_train.loop import TrainLoop
from elm_train.models import ElmPreTrainedModel, ElmSupernet
from elm_train.run import Run
from elm_train.stages import heads as heads_stage
from elm_train.stages import supernet as supernet_stage
from elm_train.teacher import teacher_layers, teacher_width

STAGE = "retrain"
STUDENTS = ("found", "baseline")


class StudentKD(nn.Module):
    """A static student with its LM head and the distillation projections."""

    def __init__(
        self, student: ElmPreTrainedModel, objective: DistillationObjective, lm_weight: float
    ) -> None:
        super().__init__()
        self.student = student
        self.objective = objective
        self.lm_weight = lm_weight

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, teacher: Any
    ) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.student(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, output_hidden_states=True
        )
        kd = self.objective(student_features(out), teacher, attention_mask)
        logs = {**kd.as_floats(), "lm": float(out.loss.detach())}
        logs.pop("total")
        return kd.total + self.lm_weight * out.loss, logs


def narrowed_space(space: SearchSpace, choices: Sequence[elm_space.LayerChoice]) -> SearchSpace:
    """``space`` with each chosen candidate cut to the chosen FFN width.

    Growth keeps a candidate's trained slices in front, so a grown candidate read at a narrower
    width is that candidate's leading (trained) part, which the supernet extracts like any path.
    """
    layers = [list(layer) for layer in space.layers]
    for i, choice in enumerate(choices):
        layers[i][choice.candidate] = layers[i][choice.candidate].model_copy(
            update={"ffn_width": choice.ffn_width}
        )
    return space.model_copy(update={"layers": tuple(tuple(layer) for layer in layers)})


def baseline_architecture(space: SearchSpace, budget: int) -> Architecture:
    """All-BERT path of one FFN width (and the most heads offered), the largest within ``budget``.

    Any width some layer offers is tried: a layer without that exact width takes its narrowest
    BERT candidate at least that wide, read at that width (see :func:`narrowed_space`). When no
    all-BERT path fits (a found model of cheap MobileBERT blocks can be smaller than any of
    them), the smallest is returned and the report says the baseline is over budget.
    """
    bert = [
        [(c.ffn_width, j, c) for j, c in enumerate(layer) if c.kind is BlockKind.BERT]
        for layer in space.layers
    ]
    if not all(bert):
        raise ValueError(f"space {space.name!r} has a layer without BERT blocks; no all-BERT baseline exists")
    offered = set().union(*({width for width, _, _ in layer} for layer in bert))
    paths = []
    for width in sorted(offered):
        fits = [[entry for entry in layer if entry[0] >= width] for layer in bert]
        if not all(fits):
            continue
        choices = [
            elm_space.LayerChoice(candidate=j, kind=BlockKind.BERT, ffn_width=width, heads=max(cand.heads))
            for _, j, cand in (min(layer, key=lambda e: (e[0], -e[1])) for layer in fits)
        ]
        paths.append(narrowed_space(space, choices).architecture(choices))
    fitting = [a for a in paths if elm_space.count_params(a) <= budget]
    return max(fitting, key=elm_space.count_params) if fitting else min(paths, key=elm_space.count_params)


class Retraining(TrainLoop):
    def __init__(
        self,
        run: Run,
        name: str,
        student: ElmPreTrainedModel,
        objective: DistillationObjective,
        out_dir: Path,
    ) -> None:
        cfg = run.config
        self.stage = f"{STAGE}.{name}"
        self.teacher = run.teacher_features
        self.causal = run.causal
        self.collator = (
            None if run.causal else DataCollatorForLanguageModeling(run.tokenizer, mlm_probability=0.15)
        )
        self.model = StudentKD(student, objective, cfg.retrain.mlm_weight)
        super().__init__(
            self.model,
            run.blocks["train"],
            cfg.deepspeed,
            cfg.retrain.optim,
            cfg.seed,
            out_dir,
            run.metrics,
            cfg.supernet.checkpoint_every,
        )

    def micro_loss(self, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        input_ids, mask = batch["input_ids"], batch["attention_mask"]
        if self.collator is None:
            labels = input_ids.masked_fill(mask == 0, -100)
        else:
            masked = self.collator.torch_call([{"input_ids": row} for row in input_ids.tolist()])
            input_ids, labels = masked["input_ids"], masked["labels"]
        return self.engine(input_ids, mask, labels, self.teacher(input_ids, mask))


def students(run: Run) -> dict[str, tuple[Architecture, str]]:
    """Each student's architecture and how it starts ("supernet" weights or "scratch")."""
    found = heads_stage.final_architecture(run)
    out = {"found": (found, run.config.retrain.init)}
    if run.config.baseline.enabled:
        space = elm_space.load(SearchSpace, run.dir / supernet_stage.STAGE / "final" / "space.json")
        out["baseline"] = (
            baseline_architecture(space, elm_space.count_params(found)),
            run.config.retrain.init,
        )
    return out


def build_student(
    run: Run, supernet: supernet_stage.SupernetKD, arch: Architecture, init: str
) -> tuple[ElmPreTrainedModel, DistillationObjective]:
    """The student and its objective (``retrain.kd``'s terms); from supernet weights it also
    keeps the supernet's trained projections, which its hidden states were distilled through."""
    head = "causal_lm" if run.causal else "masked_lm"
    space = supernet.supernet.space
    objective = build_objective(
        run.config.retrain.kd, space, teacher_width(run.teacher), teacher_layers(run.teacher)
    )
    if init == "supernet":
        supernet.supernet.space = narrowed_space(space, arch.layers)  # a fresh copy: the baseline may cut
        student = supernet.supernet.extract(arch, head=head)
        objective.load_state_dict(supernet.objective.state_dict())
    else:
        torch.manual_seed(run.config.seed)
        scratch = ElmSupernet(narrowed_space(space, arch.layers), supernet.supernet.settings)
        student = scratch.extract(arch, head=head)
    return student.train(), objective


def model_dir(run: Run, name: str) -> Path:
    return run.dir / STAGE / name / "model"


def run_stage(run: Run) -> dict[str, Any]:
    out = run.stage_dir(STAGE)
    info: dict[str, Any] = {}
    for name, (arch, init) in students(run).items():
        target = model_dir(run, name)
        if (target / "config.json").is_file():
            info[name] = {
                "architecture": arch.to_string(),
                "params": elm_space.count_params(arch),
                "skipped": True,
            }
            continue
        supernet, _ = supernet_stage.load_trained(run)
        student, objective = build_student(run, supernet, arch, init)
        trainer = Retraining(run, name, student, objective, out / name)
        history = trainer.run()
        if dist.rank() == 0:
            trainer.model.student.save_pretrained(target)
            run.tokenizer.save_pretrained(target)
        dist.barrier()
        info[name] = {
            "architecture": arch.to_string(),
            "params": elm_space.count_params(arch),
            "init": init,
            "final_loss": history[-1][1],
        }
    if "baseline" in info:
        info["baseline"]["within_budget"] = info["baseline"]["params"] <= info["found"]["params"]
    run.mark_done(STAGE, info)
    return info
