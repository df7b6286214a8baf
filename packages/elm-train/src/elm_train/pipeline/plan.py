"""``elm-train run --plan``: what a run will do, sized before anything runs.

For every stage the pipeline declares (:data:`elm_train.pipeline.STAGES`, so a new stage shows up
here by itself), the plan gives its optimizer steps, the tokens it processes, and the disk its
outputs take in the run directory (each stage's ``estimate``, on the shared
:class:`~elm_train.pipeline.sizing.PlanContext`); then what the run downloads and the disk in all.
Nothing is trained and nothing is downloaded to make it. Given a run directory whose data stage
has finished, the plan uses its real block counts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import elm_eval
from elm_train.config import RunConfig
from elm_train.pipeline.sizing import (
    DOCUMENTED_CORPORA,
    DOCUMENTED_MODELS,
    GLUE_DATASET,
    GLUE_SPLITS,
    SQUAD_SPLITS,
    PlanContext,
    StagePlan,
    byte_size,
    local_dir,
    plan_context,
    si,
    task_spec,
)
from elm_train.pipeline.stages import STAGES
from elm_train.training.global_batch import check_run, split_batch


@dataclass
class Download:
    what: str
    source: str
    size: str


@dataclass
class Plan:
    name: str
    processes: int
    stages: list[StagePlan]
    downloads: list[Download]
    blocks_note: str
    notes: list[str]

    @property
    def disk(self) -> tuple[int, bool]:
        """Known bytes in all, and whether some stage's share is unknown."""
        known = sum(s.disk or 0 for s in self.stages if s.runs)
        return known, any(s.disk is None for s in self.stages if s.runs)


def _downloads(ctx: PlanContext) -> list[Download]:
    config = ctx.config
    out: list[Download] = []

    def add(what: str, hub_id: str, detail: str, size: str) -> None:
        mirror = config.hub_mirrors.get(hub_id)
        if mirror is not None:
            out.append(Download(what, f"{hub_id}{detail}", f"nothing, read from the local copy {mirror}"))
        else:
            out.append(Download(what, f"{hub_id}{detail}", size))

    for _, source in config.data.mix():
        if source.kind != "hub":
            continue
        docs = DOCUMENTED_CORPORA.get((str(source.hub_id), source.hub_config), {})
        size = (
            ", ".join(f"{split} {n:,} documents" for split, n in docs.items()) or "size not documented here"
        )
        add("corpus", str(source.hub_id), f" ({source.hub_config})" if source.hub_config else "", size)
    teacher_names = [] if config.teacher.train is not None else [str(config.teacher.name_or_path)]
    if config.teacher.tokenizer and config.teacher.tokenizer not in teacher_names:
        teacher_names.append(config.teacher.tokenizer)
    for name in teacher_names:
        if local_dir(config, name) is None or name in config.hub_mirrors:
            params, size = DOCUMENTED_MODELS.get(name, (None, None))
            text = (
                f"{params:,} parameters, {byte_size(size)}" if params and size else "size not documented here"
            )
            add("teacher", name, "", text)
    datasets_: dict[str, list[str]] = {}
    for name in config.task_names:
        source = task_spec(name).source
        if isinstance(source, elm_eval.HubSource) and source.dataset in SQUAD_SPLITS:
            datasets_.setdefault(source.dataset, [])
        elif isinstance(source, elm_eval.HubSource):
            datasets_.setdefault(source.dataset, []).append(str(source.config))
            if source.config == "mnli" and config.tasks.glue_submission:
                datasets_[source.dataset].append("ax")  # the diagnostic set the MNLI model predicts
    for dataset, configs in datasets_.items():
        rows = sum(sum(GLUE_SPLITS.get(c, {}).values()) for c in configs) if dataset == GLUE_DATASET else 0
        rows = rows or sum(SQUAD_SPLITS.get(dataset, {}).values())
        size = f"{rows:,} rows" if rows else "size not documented here"
        add("tasks", dataset, f" ({', '.join(configs)})" if configs else "", size)
    return out


def make_plan(config: RunConfig, run_dir: Path | None = None, processes: int | None = None) -> Plan:
    """The plan of ``config``'s run (on ``processes`` processes: the launcher's WORLD_SIZE, else 1)."""
    processes = processes or int(os.environ.get("WORLD_SIZE", "1"))
    check_run(config, processes)  # a global batch that does not split is refused here already
    ctx = plan_context(config, run_dir, processes)
    stages = []
    for stage in STAGES:
        plan = StagePlan(stage.name, stage.summary, runs=stage.applies(config))
        if plan.runs and stage.estimate is not None:
            stage.estimate(ctx, plan)
        elif plan.runs:  # a stage that declares no estimate (a new one) is listed with no figures
            plan.tokens, plan.disk = None, None
            plan.tokens_text = plan.disk_text = "no estimate"
        stages.append(plan)
    split = split_batch(config.deepspeed, processes)
    notes = [
        f"{processes} process(es): {ctx.global_batch:,} blocks of {ctx.block} tokens an optimizer step "
        f"({split.micro_batch_size} x {split.gradient_accumulation_steps} accumulated x {processes}); "
        f"DeepSpeed ZeRO-{config.deepspeed.zero_stage}, {config.deepspeed.precision}",
    ]
    if ctx.teacher_params:
        notes.append(f"teacher of {ctx.teacher_params:,} parameters")
    return Plan(config.name, processes, stages, _downloads(ctx), ctx.blocks_note, notes)


def format_plan(plan: Plan) -> str:
    """The plan as the command prints it."""
    lines = [f"Plan of run {plan.name!r}: nothing has run, nothing is downloaded to make this plan.", ""]
    lines.append("Downloads (from the Hugging Face hub into its cache, outside the run directory):")
    if not plan.downloads:
        lines.append("  none")
    for d in plan.downloads:
        lines.append(f"  {d.what:<8} {d.source}: {d.size}")
    lines += ["", "Stages:"]
    rows = [("stage", "steps", "tokens", "run-dir disk", "")]
    for s in plan.stages:
        if not s.runs:
            rows.append((s.name, "skipped", "-", "-", "nothing to do for this config"))
            continue
        tokens = s.tokens_text or (si(s.tokens) if s.tokens else "-")
        disk = s.disk_text or (byte_size(s.disk) if s.disk else "-")
        rows.append((s.name, s.steps, tokens, disk, s.summary))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        lines.append(
            "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + f"  {r[4]}".rstrip()
        )
    known, unknown = plan.disk
    total = byte_size(known) + (" + N-dependent parts" if unknown else "")
    lines += ["", f"Run directory in all: about {total}.", "", f"{plan.blocks_note}."]
    lines += [f"- {n}" for n in plan.notes]
    for s in plan.stages:
        if s.runs and s.notes:
            first, *rest = s.notes
            lines.append(f"- {s.name}: {first}")
            lines += [f"    {n}" for n in rest]
    return "\n".join(lines) + "\n"
