"""Multi-task fine-tuning of the supernet (METHOD.md section 4, step 2), the ``task`` search
fitness and ``retrain.init: multitask``: the loop on a tiny two-task setup, then the tiny pipeline
with a second task built from local files."""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from pathlib import Path

import datasets
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import elm_eval
import elm_space
from elm_eval import FileSource, TaskSpec
from elm_train.cli import main
from elm_train.config import (
    DeepSpeedConfig,
    KDConfig,
    MultitaskStageConfig,
    OptimConfig,
    RetrainStageConfig,
    RunConfig,
    SearchStageConfig,
    TaskStageConfig,
    TeacherConfig,
)
from elm_train.presets import preset
from elm_train.search.fitness import TaskFitness, sample_heldout
from elm_train.training import task_distill
from elm_train.training.loop import LoopSettings
from elm_train.training.multitask_training import (
    MultitaskTask,
    MultitaskTraining,
    build_multitask_kd,
    heldout_split,
    task_key,
)
from elm_train.training.retraining import build_student
from elm_train.training.supernet_training import build_supernet_kd

SPACE = elm_space.preset("tiny")  # 3 layers x 32, vocabulary 100


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def spec(name: str, labels: int) -> TaskSpec:
    return TaskSpec(
        name=name,
        source=FileSource(train=Path("train.tsv"), validation=Path("dev.tsv")),
        text_columns=["text"],
        label_column="label",
        num_labels=labels,
    )


def rows(n: int, low: int, high: int, labels: int, seed: int) -> datasets.Dataset:
    """Token ids in [low, high) after [CLS]=2 (so each task's rows are recognisable), a label the
    ids decide."""
    g = torch.Generator().manual_seed(seed)
    ids = [[2, *torch.randint(low, high, (6,), generator=g).tolist()] for _ in range(n)]
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": [int(r[1] % labels) for r in ids]})


def teacher(labels: int, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
        num_labels=labels,
    )
    return BertForSequenceClassification(config).eval()


def two_tasks() -> list[MultitaskTask]:
    return [
        MultitaskTask("toy-a", spec("toy-a", 3), rows(64, 5, 50, 3, 0), teacher(3, 1)),
        MultitaskTask("toy-b", spec("toy-b", 2), rows(32, 50, 100, 2, 1), teacher(2, 2)),
    ]


def supernet_kd(seed: int = 0):
    return build_supernet_kd(SPACE, KDConfig(), 0.0, 48, 3, seed)


class Recording(MultitaskTraining):
    """Records the task, the path and the rows of every micro-batch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, str, str, list[list[int]]]] = []

    def micro_loss(self, batch, step):
        assert self.arch is not None and self.task is not None
        self.seen.append((step, self.task, self.arch.to_string(), batch["input_ids"].tolist()))
        return super().micro_loss(batch, step)


def trainer(tmp_path: Path, epochs: int = 3, tasks: list[MultitaskTask] | None = None) -> Recording:
    tasks = tasks or two_tasks()
    model = build_multitask_kd(supernet_kd(), {t.name: t.spec for t in tasks}, TaskStageConfig(), 0)
    return Recording(
        model,
        tasks,
        OptimConfig(lr=3e-3, epochs=epochs),
        LoopSettings(
            DeepSpeedConfig(micro_batch_size=4, gradient_accumulation_steps=2),
            0,
            tmp_path / "multitask",
            checkpoint_every=100,
        ),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    loop = trainer(tmp_path_factory.mktemp("mt"))
    history = loop.train()
    return loop, history


def test_the_loss_falls(trained):
    loop, history = trained
    assert len(history) == loop.total_steps == 3 * 12  # (64 + 32) / 8 steps an epoch
    losses = [loss for _, loss in history]
    assert all(math.isfinite(x) for x in losses)
    first, last = losses[:12], losses[-12:]
    assert sum(last) / 12 < 0.8 * sum(first) / 12, (first, last)


def test_batches_are_single_task_in_proportion_to_size(trained):
    loop, _ = trained
    by_step: dict[int, set[str]] = defaultdict(set)
    for step, task, _, ids in loop.seen:
        low, high = (5, 50) if task == "toy-a" else (50, 100)
        assert all(low <= t < high for row in ids for t in row[1:]), (step, task)
        by_step[step].add(task)
    assert all(len(tasks) == 1 for tasks in by_step.values())
    for epoch in range(3):
        steps = range(epoch * 12, (epoch + 1) * 12)
        counts = Counter(next(iter(by_step[s])) for s in steps)
        assert counts == {"toy-a": 8, "toy-b": 4}  # 64 : 32 examples
    orders = [tuple(next(iter(by_step[s])) for s in range(e * 12, (e + 1) * 12)) for e in range(3)]
    assert len(set(orders)) > 1  # shuffled per epoch
    # each epoch reads every row of a task once (the task's global batches tile its rows)
    rows_a = [tuple(r) for step, task, _, ids in loop.seen if task == "toy-a" and step < 12 for r in ids]
    assert sorted(rows_a) == sorted(tuple(r) for r in loop.tasks["toy-a"].train["input_ids"])


def test_one_path_per_step_on_every_micro_batch(trained):
    loop, _ = trained
    paths: dict[int, set[str]] = defaultdict(set)
    for step, _, arch, _ in loop.seen:
        paths[step].add(arch)
    assert all(len(p) == 1 for p in paths.values())
    assert len(paths) == loop.total_steps and len({next(iter(p)) for p in paths.values()}) > 1
    expected = elm_space.sample(SPACE, random.Random(f"0:multitask-path:{5}"))
    assert paths[5] == {expected.to_string()}


@pytest.mark.precision("bf16")
def test_bf16_multitask_learns_and_exports_fp32_weights(tmp_path):
    """The paper presets run step 2 in bf16: the loss still falls, and the module the stage saves
    holds fp32 master weights, not the bf16 copies DeepSpeed computes with."""
    tasks = two_tasks()
    model = build_multitask_kd(supernet_kd(), {t.name: t.spec for t in tasks}, TaskStageConfig(), 0)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    loop = MultitaskTraining(
        model,
        tasks,
        OptimConfig(lr=3e-3, epochs=3),
        LoopSettings(
            DeepSpeedConfig(micro_batch_size=4, gradient_accumulation_steps=2, precision="bf16"),
            seed=0,
            out_dir=tmp_path / "multitask",
            checkpoint_every=100,
        ),
    )
    losses = [loss for _, loss in loop.train()]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-12:]) < 0.8 * sum(losses[:12]), losses
    state = loop.engine.module.state_dict()
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
    moved = [k for k, v in state.items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert moved, "no weight changed"
    # fp32 masters, not bf16 values: a bf16-rounded tensor has no bits below its 8-bit mantissa
    assert any(not torch.equal(state[k], state[k].bfloat16().float()) for k in moved)


def test_the_task_fitness_scores_a_seeded_sample_of_the_heldout_rows():
    data = datasets.Dataset.from_dict(
        {"input_ids": [[2, i] for i in range(50)], "labels": [i % 2 for i in range(50)]}
    )
    sample = sample_heldout(data, 10, 0, "toy-a")
    rows = [r[1] for r in sample["input_ids"]]
    assert len(rows) == 10 and rows == sorted(rows) and rows != list(range(10))  # a sample, in order
    assert sample_heldout(data, 10, 0, "toy-a")["input_ids"] == sample["input_ids"]
    assert sample_heldout(data, 10, 1, "toy-a")["input_ids"] != sample["input_ids"]
    assert sample_heldout(data, None, 0, "toy-a") is data and sample_heldout(data, 50, 0, "toy-a") is data


def test_heldout_split_is_disjoint_and_seeded():
    train, held = heldout_split(100, 0.1, 0, "toy-a")
    assert len(held) == 10 and not set(train) & set(held) and sorted(train + held) == list(range(100))
    assert heldout_split(100, 0.1, 0, "toy-a") == (train, held)
    assert heldout_split(100, 0.1, 1, "toy-a")[1] != held


def test_task_fitness_equals_an_independent_score(trained):
    loop, _ = trained
    supernet = loop.model.supernet
    heldout = {
        "toy-a": (spec("toy-a", 3), rows(20, 5, 50, 3, 7)),
        "toy-b": (spec("toy-b", 2), rows(12, 50, 100, 2, 8)),
    }
    fitness = TaskFitness(supernet, heldout)
    arch = elm_space.sample(SPACE, random.Random(3))
    scores = []
    for name, (task_spec_, data) in heldout.items():  # the extracted static model, scored by elm-eval
        model = supernet.extract(arch, head="classification", task=task_key(name))
        scores.append(task_distill.score(model, data, task_spec_, 0)["score"])
    assert fitness(arch) == pytest.approx(sum(scores) / 2, abs=1e-12)
    assert fitness.maximize and fitness.name == "task_score"


def test_retrain_init_multitask_copies_the_multitask_backbone(trained):
    loop, _ = trained
    multitask = loop.model.supernet
    base = supernet_kd()
    base_lm = {k: v.clone() for k, v in base.supernet.lm_head.state_dict().items()}
    arch = elm_space.sample(SPACE, random.Random(4))
    student, _ = build_student(base, arch, "multitask", KDConfig(), 48, 3, 0, multitask=multitask)
    reference = multitask.extract(arch, head="masked_lm").state_dict()
    from_supernet = supernet_kd().supernet.extract(arch, head="masked_lm").state_dict()
    state = student.state_dict()
    assert set(state) == set(reference)
    copied = [k for k in state if not torch.equal(reference[k], from_supernet[k])]
    assert copied and not any("lm_head" in k for k in copied)  # training moved the backbone only
    for key, value in state.items():
        if "lm_head" in key and "decoder.weight" not in key:  # the supernet's own LM head
            assert torch.equal(value, from_supernet[key]), key
        else:
            assert torch.equal(value, reference[key]), key
    assert all(torch.equal(base.supernet.lm_head.state_dict()[k], v) for k, v in base_lm.items())


def test_the_paper_presets_configure_step_2():
    for name in ("elm-small", "elm-tiny", "elm-micro"):
        config = preset(name)
        mt = config.multitask
        assert mt.enabled and mt.optim.lr == 4e-4 and mt.optim.epochs == 10
        assert mt.batch_size == 256 and mt.heldout_fraction == 0.1
        assert config.multitask_task_names == config.task_names[:8] and len(config.task_names) == 9
        assert config.task_names[8] == "wnli"  # fine-tuned, but not in the reference's step 2
        assert config.search.fitness == "task"
    # the offline demo runs step 2 on its two embedded tasks and searches by their held-out score
    demo = preset("demo")
    assert demo.multitask.enabled and demo.search.fitness == "task"
    assert demo.multitask_task_names == demo.task_names == ["tweet-sentiment", "ptb-word-order"]
    for name in ("tiny", "demo-clm", "tiny-clm"):
        assert not preset(name).multitask.enabled and preset(name).search.fitness != "task"


def test_config_show_lists_the_multitask_section(capsys):
    assert main(["config", "show", "--preset", "elm-small"]) == 0
    out = capsys.readouterr().out
    assert "multitask:\n  enabled: true\n" in out
    assert "lr: 0.0004" in out and "batch_size: 256" in out and "heldout_fraction: 0.1" in out
    assert "fitness: task" in out


def test_task_fitness_and_multitask_init_need_the_stage():
    base = preset("tiny")
    for update in (
        {"search": SearchStageConfig(fitness="task")},
        {"retrain": RetrainStageConfig(init="multitask")},
    ):
        with pytest.raises(ValueError, match="multitask.enabled"):
            RunConfig.model_validate({**base.model_dump(), **{k: v.model_dump() for k, v in update.items()}})
    causal = preset("tiny-clm").model_dump()
    with pytest.raises(ValueError, match="masked family"):
        RunConfig.model_validate(
            {**causal, "multitask": {"enabled": True}, "tasks": {"tasks": ["tweet-sentiment"]}}
        )


# --- the tiny pipeline with a local second task -------------------------------------------------------

WORDS = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "was", "on", "said", "with", "he"]


def write_local_task(directory: Path) -> TaskSpec:
    """Sentences of common PTB words; the label says whether "the" occurs."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for split, n in (("train", 80), ("dev", 24)):
        lines = ["text\tlabel"]
        for _ in range(n):
            sentence = [rng.choice(WORDS[1:]) for _ in range(6)]
            label = rng.random() < 0.5
            if label:
                sentence[rng.randrange(6)] = "the"
            lines.append(f"{' '.join(sentence)}\t{int(label)}")
        (directory / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return TaskSpec(
        name="toy-words",
        source=FileSource(train=directory / "train.tsv", validation=directory / "dev.tsv"),
        text_columns=["text"],
        label_column="label",
        num_labels=2,
    )


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_teacher_dir):
    from elm_train.pipeline import Run, run_all

    root = tmp_path_factory.mktemp("mt-pipeline")
    local = write_local_task(root / "toy-words")
    patch = pytest.MonkeyPatch()
    patch.setitem(elm_eval.tasks.BUILTIN_TASKS, "toy-words", local)
    small = {"epochs": 1, "max_steps_per_epoch": 4, "lr": 1e-3}
    base = preset("tiny")
    config = base.model_copy(
        update={
            "teacher": TeacherConfig(name_or_path=str(tiny_teacher_dir)),
            "multitask": MultitaskStageConfig(enabled=True, optim=OptimConfig(**small)),
            "search": base.search.model_copy(update={"fitness": "task"}),
            "retrain": base.retrain.model_copy(update={"init": "multitask"}),
            "tasks": base.tasks.model_copy(update={"tasks": ["tweet-sentiment", "toy-words"]}),
        }
    )
    config = RunConfig.model_validate(config.model_dump())  # the validators see the whole config
    run = Run.open(config, root / "run")
    messages: list[str] = []
    run_all(run, echo=messages.append)
    yield run, messages
    patch.undo()


def test_the_tiny_pipeline_runs_with_multitask(pipeline_run):
    run, messages = pipeline_run
    assert "[elm-train] multitask: running" in messages
    info = run.done_info("multitask")
    assert info["steps"] == 4 and math.isfinite(info["final_loss"])
    assert info["tasks"]["toy-words"] == {"train": 58, "heldout": 6}  # 80 rows capped at 64
    split = json.loads(run.layout.multitask_split.read_text())
    for name in ("tweet-sentiment", "toy-words"):
        held = datasets.load_from_disk(str(run.layout.multitask_heldout_task(name)))
        assert len(held) == len(split[name]["heldout"])
        # the teacher the multitask stage fine-tuned is the one the tasks stage reports (not retrained)
        assert (run.layout.task_model(name, "teacher") / "config.json").is_file()
    search = run.done_info("search")
    assert search["fitness"] == "task_score" and 0.0 <= search["task_score"] <= 1.0
    assert search["task_examples"] == {"tweet-sentiment": 6, "toy-words": 6}  # all held-out rows
    assert run.done_info("retrain")["found"]["init"] == "multitask"
    assert set(run.done_info("tasks")) == {"tweet-sentiment", "toy-words"}


def test_the_teacher_is_fine_tuned_once(pipeline_run):
    run, _ = pipeline_run
    for name in ("tweet-sentiment", "toy-words"):
        started = [r for r in run.metrics.read(f"tasks.{name}.teacher") if r.get("step") == 0 and "loss" in r]
        assert len(started) == 1, name
