"""Stage 6a: retrain the chosen subnet (and the hand-designed baseline) by distillation.

Both students are extracted from the supernet with its weights, then trained by the same loop,
budget and losses: the hidden-state distillation of the supernet stage plus a language-modelling
loss (masked tokens for the masked family, next tokens for the causal one), which trains the LM
head the perplexity evaluation reads. The baseline is all BERT blocks of one width and one head
count, the widest such path of the space that fits in the found model's parameter count, so the
comparison isolates the searched architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import DataCollatorForLanguageModeling

import elm_space
from elm_distill import DistillationObjective
from elm_space import Architecture, BlockKind, SearchSpace
from elm_train.kd import TeacherFeatures, build_objective, student_features
from elm_train.loop import TrainLoop
from elm_train.models import ElmPreTrainedModel, ElmSupernet
from elm_train.run import Run
from elm_train.stages import heads as heads_stage
from elm_train.stages import supernet as supernet_stage

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


def baseline_architecture(space: SearchSpace, budget: int) -> Architecture:
    """All-BERT path of one FFN width (and the most heads offered), the largest within ``budget``."""
    per_layer = [
        {c.ffn_width: j for j, c in enumerate(layer) if c.kind is BlockKind.BERT} for layer in space.layers
    ]
    common = set(per_layer[0]).intersection(*per_layer[1:])
    if not common:
        raise ValueError(
            f"space {space.name!r} has no BERT width offered in every layer; no uniform baseline exists"
        )
    paths = []
    for width in sorted(common):
        choices = []
        for layer, widths in enumerate(per_layer):
            cand = space.layers[layer][widths[width]]
            choices.append(
                elm_space.LayerChoice(
                    candidate=widths[width], kind=BlockKind.BERT, ffn_width=width, heads=max(cand.heads)
                )
            )
        paths.append(space.architecture(choices))
    fitting = [a for a in paths if elm_space.count_params(a) <= budget]
    return max(fitting, key=elm_space.count_params) if fitting else paths[0]


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
        self.teacher = TeacherFeatures(run.teacher)
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
    head = "causal_lm" if run.causal else "masked_lm"
    if init == "supernet":
        student = supernet.supernet.extract(arch, head=head)
        objective = supernet.objective
    else:
        torch.manual_seed(run.config.seed)
        scratch = ElmSupernet(supernet.supernet.space, supernet.supernet.settings)
        student = scratch.extract(arch, head=head)
        objective = build_objective(run.config.retrain.kd, supernet.supernet.space, *_teacher_dims(run))
    return student.train(), objective


def _teacher_dims(run: Run) -> tuple[int, int]:
    return int(run.teacher.config.hidden_size), int(run.teacher.config.num_hidden_layers)


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
        trainer.model.student.save_pretrained(target)
        run.tokenizer.save_pretrained(target)
        info[name] = {
            "architecture": arch.to_string(),
            "params": elm_space.count_params(arch),
            "init": init,
            "final_loss": history[-1][1],
        }
    run.mark_done(STAGE, info)
    return info
