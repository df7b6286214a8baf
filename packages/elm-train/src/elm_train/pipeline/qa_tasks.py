"""The tasks stage for the question-answering tasks (``squad``, ``squad_v2``): the teacher fine-tuned
on the labels once, then every retrained student distilled from it
(:mod:`elm_train.training.qa_distill`), each keeping its best dev checkpoint (by F1). One elm-eval
TaskResult per model (metric ``squad``/``squad_v2``, score F1, EM and the v2.0 HasAns/NoAns
split in its values), and a model card with EM/F1 beside each fine-tuned student."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import AutoModelForQuestionAnswering, PreTrainedModel

import elm_eval
from elm_eval import TaskResult
from elm_train.models.model_card import ModelCardInfo, Score, write_model_card
from elm_train.pipeline.stages import retrain
from elm_train.pipeline.task_models import selected_result, train_and_publish
from elm_train.runtime import distributed as dist
from elm_train.training.loop import LoopSettings
from elm_train.training.qa_distill import QATaskTraining, QAValidation, encode_train, qa_model
from elm_train.training.task_distill import task_deepspeed

if TYPE_CHECKING:
    import datasets

    from elm_train.pipeline.context import Run


def qa_spec(run: Run, name: str) -> elm_eval.QATaskSpec:
    """elm-eval's QA task with the tasks section's caps and the run's hub mirrors."""
    cfg = run.config.tasks
    spec = elm_eval.get_qa_task(name).capped(cfg.max_train_examples, cfg.max_eval_examples)
    return elm_eval.with_hub_mirrors(spec, run.config.hub_mirrors)


def run_qa_task(run: Run, name: str) -> list[TaskResult]:
    cfg = run.config.tasks
    plan = cfg.for_task(name)
    layout = run.layout
    spec = qa_spec(run, name)
    data = elm_eval.load_qa_data(spec)  # every row checked before anything trains
    train = encode_train(run.tokenizer, data.train, cfg.qa)
    valid = QAValidation.build(run.tokenizer, data.validation, cfg.qa, spec.metric)
    ds = task_deepspeed(run.config.deepspeed, plan.batch_size, dist.world_size())
    layout.task_dir(name).mkdir(parents=True, exist_ok=True)

    def trained(
        who: str,
        source: str | Path,
        teacher: PreTrainedModel | None,
        lr: float,
        epochs: int,
        eval_every: int | None,
    ) -> TaskResult:
        target = _train(run, name, who, source, teacher, lr, epochs, eval_every, spec, train, valid)
        model = AutoModelForQuestionAnswering.from_pretrained(str(target))
        own = {
            **_kd_settings(run, teacher is not None),
            **{
                f"qa.{k}": v
                for k, v in cfg.qa.model_dump().items()
                if k not in ("logits_loss", "logits_params")
            },
            "train_windows": len(train),
        }
        sizes = (len(data.train), len(data.validation))
        reported = (spec.name, spec.metric)
        return selected_result(run, name, who, model, reported, sizes, own, ds, lr, epochs, eval_every)

    results = [trained("teacher", run.teacher_source, None, plan.teacher_lr, plan.teacher_epochs, None)]
    teacher = AutoModelForQuestionAnswering.from_pretrained(str(layout.task_model(name, "teacher"))).eval()
    for student, info in retrain.students(run).items():
        result = trained(student, info["model_dir"], teacher, plan.lr, plan.epochs, plan.eval_every)
        results.append(result)
        if dist.rank() == 0:
            _card(run, name, student, info, result)
    if dist.rank() == 0:
        for result in results:
            elm_eval.write_result(result, layout.results)
    dist.barrier()
    return results


def _kd_settings(run: Run, distilled: bool) -> dict[str, Any]:
    cfg = run.config.tasks
    if not distilled:
        return {"kd": "none"}
    hidden = {feature: f"{loss} x {weight:g}" for feature, loss, weight in cfg.hidden_terms()}
    params = ", ".join(f"{k} {v}" for k, v in cfg.qa.logits_params.items())
    return {
        "kd": f"{cfg.qa.logits_loss} on start and end logits" + (f" ({params})" if params else ""),
        "kd_weight": cfg.logits_weight,
        "label_weight": cfg.label_weight,
        "hidden_kd": hidden or "none",
    }


def _train(
    run: Run,
    name: str,
    who: str,
    source: str | Path,
    teacher: PreTrainedModel | None,
    lr: float,
    epochs: int,
    eval_every: int | None,
    spec: elm_eval.QATaskSpec,
    train: datasets.Dataset,
    valid: QAValidation,
) -> Path:
    """``layout.task_model(name, who)``, fine-tuned first unless it exists (as
    :func:`elm_train.pipeline.task_models.train_task_model` does for the classification tasks)."""
    cfg = run.config.tasks
    layout = run.layout
    target = layout.task_model(name, who)
    if (target / "config.json").is_file():
        return target
    plan = cfg.for_task(name)
    ds = task_deepspeed(run.config.deepspeed, plan.batch_size, dist.world_size())
    trainer = QATaskTraining(
        f"{name}.{who}",
        qa_model(source, run.config.seed),
        teacher,
        train,
        spec,  # type: ignore[arg-type]  (a QA spec: QATaskTraining reads its metric only)
        cfg,
        cfg.optim.model_copy(update={"lr": lr, "epochs": epochs}),
        LoopSettings(
            ds,
            seed=run.config.seed,
            out_dir=layout.task_training(name, who),
            metrics=run.metrics,
            checkpoint_every=run.config.supernet.checkpoint_every,
            pad_id=run.tokenizer.pad_token_id or 0,
        ),
        validation=valid,  # type: ignore[arg-type]
        eval_every=eval_every,
        best_dir=layout.task_best(name, who),
    )
    return train_and_publish(run, name, who, trainer, target)


def _card(run: Run, name: str, student: str, info: dict[str, Any], result: TaskResult) -> Path:
    """The fine-tuned student's model card: architecture, how it was tuned, EM and F1."""
    values = result.validation_metrics
    exact = "exact_match" if result.metric == "squad" else "exact"
    scores = [
        Score(name=f"{name} F1", value=values["f1"], metric="f1", dataset=name, task="question-answering"),
        Score(
            name=f"{name} exact match",
            value=values[exact],
            metric="exact_match",
            dataset=name,
            task="question-answering",
        ),
    ]
    if "null_threshold" in values:
        scores.append(
            Score(name=f"{name} null-score threshold (chosen on dev)", value=values["null_threshold"])
        )
    settings = result.settings
    card = ModelCardInfo.for_architecture(
        info["architecture"],
        name=f"{run.config.name}-{student}-{name}",
        head="question_answering",
        teacher=f"{run.config.teacher.name_or_path} fine-tuned on {name} in the run",
        data=f"{name} train split ({result.num_train_examples} examples, {settings['train_windows']} windows)",
        training_steps=settings["best_step"],
        training=(
            f"{student} student of run `{run.config.name}`, fine-tuned on {name} by distillation "
            f"({settings.get('kd')}; hidden: {settings.get('hidden_kd')}; labels x {settings.get('label_weight')}), "
            f"lr {settings['lr']}, {settings['epochs']} epochs, best dev checkpoint (step {settings['best_step']})"
        ),
        scores=scores,
        parameters=result.num_parameters,
    )
    return write_model_card(run.layout.task_model(name, student), card)
