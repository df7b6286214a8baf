"""Evaluate: the exported students and the teacher, scored by elm-eval (the same code a user
would run on any other checkpoint): LM perplexity on held-out text, and CPU latency; with
``eval.onnx``, each student's ONNX fp32 and int8 files, three runtimes' latency and the ONNX
models' perplexity (:mod:`elm_train.deployment`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import elm_eval
from elm_eval import CausalLMConfig, LatencyConfig, MaskedLMConfig, MaskingConfig
from elm_train.data import heldout_texts
from elm_train.deployment import deploy, onnx_enabled, task_scores
from elm_train.pipeline.sizing import PlanContext, StagePlan
from elm_train.pipeline.stage import Stage
from elm_train.pipeline.stages import retrain
from elm_train.pipeline.task_models import load_task
from elm_train.runtime.errors import ElmTrainError

if TYPE_CHECKING:
    from elm_train.pipeline.context import Run


def causal_config(run: Run) -> CausalLMConfig:
    """Windows of one training block moved by half a block. Documents are joined by the EOS token,
    as the training blocks join them, so the scored stream looks like what the models learnt on."""
    length = run.config.data.block_size
    joiner = run.tokenizer.eos_token or "\n\n"
    return CausalLMConfig(
        max_length=length,
        stride=length // 2,
        joiner=joiner,
        batch_size=run.config.deepspeed.micro_batch_size,
        progress=True,
    )


def _perplexity(run: Run, model: Any, name: str, texts: list[str]) -> Any:
    """Held-out perplexity of ``model`` (a directory or an ONNX model) by the run's protocol."""
    if run.causal:
        result = elm_eval.causal_lm_perplexity(model, run.tokenizer, texts, causal_config(run), name=name)
    else:
        length = run.config.data.block_size
        config = MaskedLMConfig(max_length=length, masking=MaskingConfig(seed=run.config.seed))
        result = elm_eval.masked_lm_perplexity(model, run.tokenizer, texts, config, name=name)
    if not math.isfinite(result.perplexity):  # a number that is not a result
        raise ElmTrainError(
            f"evaluate: {name}{f' ({model})' if isinstance(model, str) else ''}: held-out loss {result.loss} gives perplexity "
            f"{result.perplexity}; its outputs overflow, so it is not reported"
        )
    return result


def _deployment(run: Run, models: dict[str, str], texts: list[str] | None) -> dict[str, Any]:
    """ONNX fp32 and int8 files of each student, three runtimes' latency (batch 1 and the training
    micro-batch) and, with the LM evaluation on, the ONNX models' perplexity."""
    cfg = run.config.eval
    latency = LatencyConfig(
        batch_sizes=sorted({1, run.config.deepspeed.micro_batch_size}),
        seq_lengths=[cfg.latency_seq_len],
        repeats=cfg.latency_repeats,
        measure_memory=False,
        progress=False,
    )
    head = "causal-lm" if run.causal else "masked-lm"
    score = None if texts is None else (lambda model, label: _perplexity(run, model, label, texts))
    deployment = {}
    for name, path in models.items():
        summary, results = deploy(name, path, run.layout.onnx_dir(name), head, latency, score)
        for result in results:
            elm_eval.write_result(result, run.layout.results)
        deployment[name] = summary
    if run.is_done("tasks"):  # each fine-tuned student classifier, int8 beside fp32
        # (extractive QA models are not exported: their scores need the SQuAD post-processing)
        for task in [t for t in run.config.task_names if not elm_eval.is_qa_task(t)]:
            spec, data, _, _ = load_task(run, task)
            for name in models:
                deployment[name].setdefault("tasks", {})[task] = task_scores(
                    run.layout.task_model(task, name),
                    run.layout.onnx_dir(name) / "tasks" / task,
                    spec,
                    data.validation,
                    run.tokenizer,
                    run.config.tasks.max_seq_length,
                )
    return deployment


def execute(run: Run) -> dict[str, Any]:
    cfg = run.config.eval
    models = {name: str(info["model_dir"]) for name, info in retrain.students(run).items()}
    info: dict[str, Any] = {}
    if cfg.lm and not run.config.measures_perplexity:  # nothing trained the students' LM heads
        info["perplexity"] = (
            f"not measured: no masked-LM loss trained the LM heads ({run.config.retrain.route()})"
        )
    elif cfg.lm:
        texts = heldout_texts(run.config.data, cfg.lm_documents, run.config.hub_mirrors)
        # the causal teacher has an LM head, so it gets a perplexity too (MiniLM has none)
        lm_models = {"teacher": run.teacher_source, **models} if run.causal else models
        for name, path in lm_models.items():
            result = _perplexity(run, path, name, texts)
            elm_eval.write_result(result, run.layout.results)
            info[f"{name}.perplexity"] = result.perplexity
    if cfg.latency:
        latency = LatencyConfig(
            batch_sizes=[cfg.latency_batch_size],
            seq_lengths=[cfg.latency_seq_len],
            repeats=cfg.latency_repeats,
        )
        for name, path in {"teacher": run.teacher_source, **models}.items():
            result = elm_eval.measure_latency(path, latency, name=name)
            elm_eval.write_result(result, run.layout.results)
            info[f"{name}.latency_ms"] = result.entries[0].stats.median_ms
    if onnx_enabled(cfg.onnx):
        texts = heldout_texts(run.config.data, cfg.lm_documents, run.config.hub_mirrors) if cfg.lm else None
        info["deployment"] = _deployment(run, models, texts)
    return info


def estimate(ctx: PlanContext, plan: StagePlan) -> None:
    cfg = ctx.config.eval
    parts = []
    if cfg.lm and not ctx.config.measures_perplexity:
        parts.append("no perplexity: no masked-LM loss trains the students' LM heads")
    elif cfg.lm:
        docs = f"{cfg.lm_documents:,}" if cfg.lm_documents else "all"
        parts.append(f"perplexity on {docs} held-out documents")
    if cfg.latency:
        parts.append(f"latency {cfg.latency_repeats} x {cfg.latency_batch_size} x {cfg.latency_seq_len}")
    plan.tokens, plan.tokens_text = None, "see below"
    plan.notes += parts


STAGE = Stage(
    "evaluate",
    "perplexity and latency of the exported models",
    execute,
    reads=("data", "teacher", "retrain"),
    writes=("results", "onnx_dir"),
    ranks="rank0",
    settings=("eval",),
    estimate=estimate,
)
