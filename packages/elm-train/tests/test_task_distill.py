"""Task fine-tuning by distillation: the loss by hand, the choices, best-checkpoint selection and
its resume, per-task settings (METHOD.md section 4, step 5b)."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

import elm_space
from elm_distill import dist_loss, hidden_mse, pearson_hidden_loss, soft_cross_entropy
from elm_eval import FileSource, TaskSpec
from elm_space import BlockKind, LayerChoice
from elm_train.config import ConfigError, DeepSpeedConfig, OptimConfig, TaskStageConfig, load_config
from elm_train.models import ElmForSequenceClassification
from elm_train.models.settings import elm_config
from elm_train.presets import preset
from elm_train.runtime.metrics import NullMetrics
from elm_train.training import task_distill
from elm_train.training.loop import LoopSettings
from elm_train.training.task_distill import (
    TaskKD,
    TaskTeacher,
    TaskTraining,
    better,
    task_deepspeed,
    task_kd_loss,
)

SPACE = elm_space.preset("tiny")  # 3 layers x 32, vocabulary 100


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def mixed_architecture() -> elm_space.Architecture:
    """BERT, MobileBERT (attention in its bottleneck), BERT."""

    def first(kind: BlockKind) -> LayerChoice:
        j, c = next((j, c) for j, c in enumerate(SPACE.layers[0]) if c.kind is kind)
        return LayerChoice(candidate=j, kind=kind, ffn_width=c.ffn_width, heads=2, inner_size=c.inner_size)

    return SPACE.architecture([first(BlockKind.BERT), first(BlockKind.MOBILE), first(BlockKind.BERT)])


def student(num_labels: int = 3, seed: int = 0) -> ElmForSequenceClassification:
    torch.manual_seed(seed)
    problem = "regression" if num_labels == 1 else "single_label_classification"
    config = elm_config(mixed_architecture(), num_labels=num_labels, problem_type=problem)
    return ElmForSequenceClassification(config)


def teacher(num_labels: int = 3, seed: int = 1) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=48,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config).eval()


def a_batch(regression: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    mask = torch.ones(4, 10, dtype=torch.long)
    mask[1, 7:] = 0
    mask[3, 5:] = 0
    labels = torch.rand(4, generator=g) * 5 if regression else torch.tensor([0, 2, 1, 2])
    return {
        "input_ids": torch.randint(5, 100, (4, 10), generator=g) * mask,
        "attention_mask": mask,
        "token_type_ids": torch.zeros(4, 10, dtype=torch.long),
        "labels": labels,
    }


def inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


def kd_module(settings: TaskStageConfig, regression: bool = False) -> tuple[TaskKD, TaskTeacher]:
    labels = 1 if regression else 3
    model, teach = student(labels), TaskTeacher(teacher(labels), tap=bool(settings.hidden_terms()))
    objective = (
        task_kd_loss(settings, model, teach.width, teach.num_layers) if settings.hidden_terms() else None
    )
    return TaskKD(model, regression, settings, objective).eval(), teach


# --- the loss ---------------------------------------------------------------------------------------


def test_loss_is_hidden_plus_logits_plus_label_by_hand():
    settings = TaskStageConfig(label_weight=0.5, logits_weight=2.0)  # pearson on embeddings + layers, DIST
    module, teach = kd_module(settings)
    batch = a_batch()
    mask = batch["attention_mask"]
    total, logs = module(batch, teach(batch))

    with torch.no_grad():
        t = teach.model(**inputs(batch), output_hidden_states=True)  # taps-independent teacher features
    s = module.model(**inputs(batch), output_hidden_states=True)
    project = module.objective.projections["hidden"]
    mapped = [1, 2, 3]  # 3 student layers over 4 teacher layers, last of each group: (l + 1) * 4 / 3
    assert module.objective.config.layer_map.teacher_layers == mapped
    hidden = pearson_hidden_loss(project(s.hidden_states[0]), t.hidden_states[0], mask)
    for layer, teacher_layer in enumerate(mapped):
        hidden = hidden + pearson_hidden_loss(
            project(s.hidden_states[layer + 1]), t.hidden_states[teacher_layer + 1], mask
        )
    logits = dist_loss(s.logits, t.logits)
    label = torch.nn.functional.cross_entropy(s.logits, batch["labels"])
    expected = hidden + 2.0 * logits + 0.5 * label
    assert torch.allclose(total, expected, rtol=1e-5, atol=1e-6)
    assert logs["hidden_loss"] == pytest.approx(float(hidden.detach()), rel=1e-5)
    assert logs["kd_loss"] == pytest.approx(float(logits.detach()), rel=1e-5)
    assert logs["label_loss"] == pytest.approx(float(label.detach()), rel=1e-5)
    assert {k for k in logs if k.startswith("hidden.")} == {
        "hidden.embeddings.pearson",
        "hidden.layers.pearson",
    }

    total.backward()  # the projection trains with the student
    assert project.maps["32"].weight.grad is not None and project.maps["32"].weight.grad.abs().sum() > 0
    assert {n for n, _ in module.named_parameters() if n.startswith("objective.")} == {
        "objective.projections.hidden.maps.32.weight",
        "objective.projections.hidden.maps.32.bias",
    }
    teach.close()


def test_attention_terms_use_one_projection_per_attention_width():
    settings = TaskStageConfig(
        hidden_loss={"embeddings": "pearson", "attention": "mse", "layers": "mse"},
        attention_weight=1.0,
        layer_map="first",
        label_weight=0.0,
    )
    module, teach = kd_module(settings)
    batch = a_batch()
    mask = batch["attention_mask"]
    total, _ = module(batch, teach(batch))

    attention_out: dict[int, torch.Tensor] = {}
    hooks = [
        layer.attention.register_forward_hook(
            lambda _m, _i, out, i=i: attention_out.__setitem__(i, out[0] if isinstance(out, tuple) else out)
        )
        for i, layer in enumerate(teach.model.bert.encoder.layer)
    ]
    with torch.no_grad():
        t = teach.model(**inputs(batch), output_hidden_states=True)
    for hook in hooks:
        hook.remove()
    s = module.model(**inputs(batch), output_hidden_states=True)
    widths = sorted({a.shape[-1] for a in s.attention_outputs})
    assert len(widths) == 2  # the MobileBERT block attends in its bottleneck
    hidden_p, attention_p = module.objective.projections["hidden"], module.objective.projections["attention"]
    assert attention_p.student_widths == widths
    mapped = [0, 1, 2]  # first of each group: floor(l * 4 / 3)
    expected = pearson_hidden_loss(hidden_p(s.hidden_states[0]), t.hidden_states[0], mask)
    for layer, tl in enumerate(mapped):
        expected = expected + hidden_mse(attention_p(s.attention_outputs[layer]), attention_out[tl], mask)
        expected = expected + hidden_mse(hidden_p(s.hidden_states[layer + 1]), t.hidden_states[tl + 1], mask)
    expected = expected + dist_loss(s.logits, t.logits)  # label_weight 0: no label term
    assert torch.allclose(total, expected, rtol=1e-5, atol=1e-6)
    teach.close()


@pytest.mark.parametrize(
    ("loss", "params"),
    [("soft_ce", {}), ("soft_ce", {"temperature": 2.0, "t_squared": True}), ("dist", {"beta": 2.0})],
)
def test_logits_loss_is_selectable(loss, params):
    settings = TaskStageConfig(logits_loss=loss, logits_params=params, embedding_weight=0, layer_weight=0)
    module, teach = kd_module(settings)
    assert module.objective is None and teach.taps is None  # hidden KD off: no taps, no projections
    batch = a_batch()
    total, logs = module(batch, teach(batch))
    with torch.no_grad():
        t_logits = teach.model(**inputs(batch)).logits
    s_logits = module.model(**inputs(batch)).logits
    fn = soft_cross_entropy if loss == "soft_ce" else dist_loss
    kd = fn(s_logits, t_logits, None, **params)
    assert logs["kd_loss"] == pytest.approx(float(kd.detach()), rel=1e-5)
    label = torch.nn.functional.cross_entropy(s_logits, batch["labels"])
    assert float(total.detach()) == pytest.approx(float((kd + label).detach()), rel=1e-5)


def test_soft_ce_is_chosen_end_to_end_from_a_config_file(tmp_path):
    for name in ("tiny", "elm-small"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            f"preset: {name}\ntasks: {{logits_loss: soft_ce, logits_params: {{temperature: 2}}}}\n"
        )
        cfg = load_config(path).tasks
        assert cfg.logits_loss == "soft_ce" and cfg.logits_params == {"temperature": 2}
        path.write_text(f"preset: {name}\ntasks: {{logits_loss: soft_ce}}\n")
        assert load_config(path).tasks.logits_loss == "soft_ce"  # no DIST parameters left behind


@pytest.mark.parametrize("target", ["gold", "teacher"])
def test_regression_is_mse_to_the_gold_score_or_the_teacher(target):
    settings = TaskStageConfig(regression_target=target, label_weight=0.0, embedding_weight=0, layer_weight=0)
    module, teach = kd_module(settings, regression=True)
    batch = a_batch(regression=True)
    total, logs = module(batch, teach(batch))
    with torch.no_grad():
        t_value = teach.model(**inputs(batch)).logits.squeeze(-1)
    s_value = module.model(**inputs(batch)).logits.squeeze(-1)
    goal = batch["labels"] if target == "gold" else t_value
    assert float(total.detach()) == pytest.approx(float(((s_value - goal) ** 2).mean().detach()), rel=1e-5)
    assert logs["label_loss"] == pytest.approx(float(((s_value - batch["labels"]) ** 2).mean().detach()))


def test_without_a_teacher_the_labels_alone():
    module, _ = kd_module(TaskStageConfig(label_weight=0.0))
    batch = a_batch()
    total, logs = module(batch, None)
    s_logits = module.model(**inputs(batch)).logits
    expected = torch.nn.functional.cross_entropy(s_logits, batch["labels"])
    assert float(total.detach()) == pytest.approx(float(expected.detach()))
    assert set(logs) == {"label_loss"}


# --- settings -----------------------------------------------------------------------------------------


def test_per_task_overrides_resolve_and_are_validated(tmp_path):
    cfg = TaskStageConfig(eval_every=50, per_task={"cola": {"epochs": 50}, "QQP": {"eval_every": 250}})
    assert cfg.for_task("cola").epochs == 50 and cfg.for_task("CoLA").eval_every == 50
    assert cfg.for_task("qqp").eval_every == 250 and cfg.for_task("qqp").epochs == cfg.optim.epochs
    assert cfg.for_task("rte") == cfg.for_task("mnli")
    assert cfg.for_task("rte").lr == cfg.optim.lr and cfg.for_task("rte").teacher_epochs == cfg.teacher_epochs

    def refused(body: str, message: str) -> None:
        path = tmp_path / "c.yaml"
        path.write_text(f"preset: tiny\ntasks: {body}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(path)

    refused("{per_task: {colaa: {epochs: 5}}}", r"tasks\.per_task: unknown task 'colaa'")
    refused("{per_task: {cola: {epoch: 5}}}", r"tasks\.per_task\.cola\.epoch: Extra inputs are not permitted")
    refused("{per_task: {cola: {epochs: 0}}}", r"tasks\.per_task\.cola\.epochs")
    refused("{per_task: {sst2: {epochs: 2}, SST-2: {epochs: 3}}}", "task 'sst2' is listed twice")
    refused("{label_weight: 0, logits_weight: 0}", "nothing would train")
    refused("{hidden_loss: {layers: mse}}", r"names no loss for \['embeddings'\]")
    refused("{hidden_loss: nope}", "no loss named 'nope'")


def test_the_paper_preset_fine_tunes_as_the_reference():
    cfg = preset("elm-small").tasks
    assert cfg.label_weight == 0 and cfg.logits_loss == "dist" and cfg.regression_target == "gold"
    assert cfg.batch_size == 32 and cfg.optim.lr == 5e-5 and cfg.max_seq_length == 128
    assert cfg.for_task("cola").epochs == 50 and cfg.for_task("mnli").epochs == 10
    assert cfg.for_task("qqp").eval_every == 250 and cfg.for_task("sst2").eval_every == 50
    assert [(f, w) for f, _, w in cfg.hidden_terms()] == [("embeddings", 1), ("attention", 1), ("layers", 1)]
    assert cfg.glue_submission


def test_batch_size_splits_into_micro_batches():
    ds = DeepSpeedConfig(micro_batch_size=64, gradient_accumulation_steps=4)
    same = task_deepspeed(ds, None, 2)  # the deepspeed section's global batch: 256, as on one process
    assert (same.micro_batch_size, same.gradient_accumulation_steps, same.global_batch) == (64, 2, 256)
    one = task_deepspeed(ds, 32, 1)
    assert (one.micro_batch_size, one.gradient_accumulation_steps) == (32, 1)
    small = task_deepspeed(DeepSpeedConfig(micro_batch_size=5), 32, 2)  # 16 per process, micro <= 5
    assert (small.micro_batch_size, small.gradient_accumulation_steps) == (4, 4)
    with pytest.raises(
        ConfigError, match=r"tasks.batch_size=32 examples a step do not split evenly over 3 processes"
    ):
        task_deepspeed(ds, 32, 3)


def test_better_prefers_higher_and_never_nan():
    assert better(0.5, None) and better(float("nan"), None)
    assert better(0.6, 0.5) and not better(0.5, 0.5) and not better(0.4, 0.5)
    assert not better(float("nan"), 0.1) and better(-1.0, float("nan"))


# --- best-checkpoint selection ----------------------------------------------------------------------

SPEC = TaskSpec(
    name="toy",
    source=FileSource(train=Path("train.tsv"), validation=Path("dev.tsv")),
    text_columns=["text"],
    label_column="label",
    num_labels=3,
)


def toy_split(n: int, seed: int) -> datasets.Dataset:
    g = torch.Generator().manual_seed(seed)
    ids = [[2, *torch.randint(5, 100, (6,), generator=g).tolist()] for _ in range(n)]
    labels = [int(sum(row) % 3) for row in ids]
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": labels})


def training(out: Path, eval_every: int | None, cls: type[TaskTraining] = TaskTraining, **kw) -> TaskTraining:
    return cls(
        "toy.found",
        student(),
        teacher(),
        toy_split(64, 0),
        SPEC,
        TaskStageConfig(),
        OptimConfig(lr=3e-3, epochs=2, max_steps_per_epoch=4),
        LoopSettings(
            DeepSpeedConfig(micro_batch_size=8),
            0,
            out,
            kw.pop("metrics", NullMetrics()),
            checkpoint_every=kw.pop("checkpoint_every", 3),
        ),
        validation=toy_split(24, 1),
        eval_every=eval_every,
        **kw,
    )


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_the_best_of_several_evaluations_is_kept(tmp_path, monkeypatch):
    scripted = iter([0.50, 0.80, 0.70, 0.80])  # steps 2, 4, 6, 8: the first 0.80 wins, the tie does not
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    trainer = training(tmp_path / "run", eval_every=2)

    def fake_score(model, data, spec, pad_id, batch_size=64):
        snapshots[len(snapshots) * 2 + 2] = weights(model)
        value = next(scripted)
        return {"metric": "accuracy", "score": value, "values": {"accuracy": value}}

    monkeypatch.setattr(task_distill, "score", fake_score)
    trainer.train()
    assert [(e["step"], e["score"]) for e in trainer.evaluations] == [(2, 0.5), (4, 0.8), (6, 0.7), (8, 0.8)]
    assert trainer.best["step"] == 4 and trainer.best["score"] == 0.8
    saved = load_file(str(trainer.best_dir / "model.safetensors"))
    for name, tensor in saved.items():
        assert torch.equal(tensor, snapshots[4][name]), name
    assert not torch.equal(saved["classifier.weight"], snapshots[8]["classifier.weight"])


def test_a_tiny_real_run_keeps_its_best_dev_model(tmp_path):
    trainer = training(tmp_path / "run", eval_every=None, checkpoint_every=50)  # each epoch's end
    history = trainer.train()
    assert len(history) == 8 and all(math.isfinite(loss) for _, loss in history)
    assert [e["step"] for e in trainer.evaluations] == [4, 8]
    scores = [e["score"] for e in trainer.evaluations]
    assert trainer.best["score"] == max(scores)
    assert trainer.best["step"] == trainer.evaluations[scores.index(max(scores))]["step"]
    best = AutoModelForSequenceClassification.from_pretrained(trainer.best_dir)
    assert task_distill.score(best, trainer.validation, SPEC, 0)["score"] == trainer.best["score"]
    assert not any(
        name.startswith("objective") for name in load_file(str(trainer.best_dir / "model.safetensors"))
    )


class Interrupted(Exception):
    pass


def test_the_best_so_far_survives_a_resume(tmp_path, monkeypatch):
    """Scores from the weights (so they differ per step and replay exactly); interrupted before step 7
    trains, resumed from the checkpoint after step 5: the same evaluations, best and best model."""

    def weight_score(model, data, spec, pad_id, batch_size=64):
        value = float(model.classifier.weight.detach().sum()) % 1.0
        return {"metric": "accuracy", "score": value, "values": {"accuracy": value}}

    monkeypatch.setattr(task_distill, "score", weight_score)
    reference = training(tmp_path / "reference", eval_every=2)
    reference.train()

    class Stopping(TaskTraining):
        def begin_step(self, step: int) -> None:
            super().begin_step(step)
            if step == 7:
                raise Interrupted

    stopped = training(tmp_path / "resumed", eval_every=2, cls=Stopping)
    with pytest.raises(Interrupted):
        stopped.train()
    assert [e["step"] for e in stopped.evaluations] == [2, 4, 6]
    events: list[dict] = []

    class Events:
        def log(self, stage: str, **values) -> None:
            events.append(values)

    resumed = training(tmp_path / "resumed", eval_every=2, metrics=Events())
    resumed.train()
    assert [e["step"] for e in events if e.get("event") == "resumed"] == [5]  # not started afresh
    assert [e["step"] for e in resumed.evaluations] == [2, 4, 6, 8]
    assert resumed.evaluations == reference.evaluations and resumed.best == reference.best
    assert (
        load_file(str(resumed.best_dir / "model.safetensors")).keys()
        == load_file(str(reference.best_dir / "model.safetensors")).keys()
    )
    for name, tensor in load_file(str(resumed.best_dir / "model.safetensors")).items():
        assert torch.equal(tensor, load_file(str(reference.best_dir / "model.safetensors"))[name]), name


@pytest.mark.precision("bf16")
def test_a_bf16_run_keeps_its_best_model_in_full_precision(tmp_path, monkeypatch):
    """The best model is saved mid-training from the optimizer's fp32 weights, not the module's
    bf16 copies (the loop exports fp32 at the end; a best model must not be coarser)."""
    scripted = iter([0.9, 0.1])  # steps 4 and 8: the first is kept
    rounded: dict[str, torch.Tensor] = {}

    def fake_score(model, data, spec, pad_id, batch_size=64):
        if not rounded:
            rounded.update({k: v.detach().clone() for k, v in model.named_parameters()})
        value = next(scripted)
        return {"metric": "accuracy", "score": value, "values": {"accuracy": value}}

    monkeypatch.setattr(task_distill, "score", fake_score)
    trainer = TaskTraining(
        "toy.found",
        student(),
        teacher(),
        toy_split(64, 0),
        SPEC,
        TaskStageConfig(),
        OptimConfig(lr=3e-3, epochs=2, max_steps_per_epoch=4),
        LoopSettings(
            DeepSpeedConfig(micro_batch_size=8, precision="bf16"), seed=0, out_dir=tmp_path / "run", pad_id=0
        ),
        validation=toy_split(24, 1),
        eval_every=4,
    )
    trainer.train()
    assert trainer.best["step"] == 4
    saved = load_file(str(trainer.best_dir / "model.safetensors"))
    assert rounded["classifier.weight"].dtype == torch.bfloat16  # the module trained in bf16
    finer = 0
    for name, tensor in saved.items():
        assert tensor.dtype == torch.float32, name
        if name in rounded:
            assert torch.equal(tensor.to(torch.bfloat16), rounded[name]), name  # the same weights...
            finer += not torch.equal(tensor, rounded[name].float())  # ...at full precision
    assert finer > 0
