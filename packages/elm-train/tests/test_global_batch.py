"""The global batch means the same on any process count; the paper presets' routes as the
reference ran them (search on MNLI, retraining from the multitask supernet by hidden-state KD alone,
WNLI among the tasks), as ``elm-train config show`` prints them."""

from __future__ import annotations

import pytest
import yaml

from elm_train import cli
from elm_train.config import (
    ConfigError,
    DeepSpeedConfig,
    RetrainStageConfig,
    RunConfig,
    load_config,
    merge_configs,
)
from elm_train.pipeline.plan import make_plan
from elm_train.presets import preset
from elm_train.training.global_batch import GlobalBatchError, check_run, split_batch

PAPER_DS = DeepSpeedConfig(micro_batch_size=64, global_batch_size=256)


@pytest.mark.parametrize(
    ("world", "micro", "accumulation"), [(1, 64, 4), (2, 64, 2), (4, 64, 1), (8, 32, 1), (16, 16, 1)]
)
def test_256_a_step_on_any_process_count(world, micro, accumulation):
    split = split_batch(PAPER_DS, world)
    assert (split.micro_batch_size, split.gradient_accumulation_steps) == (micro, accumulation)
    assert split.micro_batch_size * split.gradient_accumulation_steps * world == 256 == split.global_batch
    assert split_batch(split, world) == split  # splitting what was split changes nothing


def test_a_micro_batch_that_does_not_divide_the_share_shrinks_to_one_that_does():
    split = split_batch(DeepSpeedConfig(micro_batch_size=48, global_batch_size=256), 1)
    assert (split.micro_batch_size, split.gradient_accumulation_steps) == (32, 8)  # never above 48


def test_a_config_written_for_one_process_keeps_its_meaning():
    # 64 x 4 accumulated was 256 on one process and 1,024 on four; now 256 on both
    legacy = DeepSpeedConfig(micro_batch_size=64, gradient_accumulation_steps=4)
    assert legacy.global_batch == 256
    assert split_batch(legacy, 1).gradient_accumulation_steps == 4
    four = split_batch(legacy, 4)
    assert (four.micro_batch_size, four.gradient_accumulation_steps, four.global_batch) == (64, 1, 256)
    tiny = preset("tiny").deepspeed
    assert split_batch(tiny, 1) == tiny.model_copy(update={"global_batch_size": 8})  # 8 x 1, as before


def test_a_global_batch_that_does_not_split_is_refused_with_the_numbers():
    with pytest.raises(
        GlobalBatchError, match=r"deepspeed.global_batch_size=256 .* over 3 processes \(256 / 3"
    ):
        split_batch(PAPER_DS, 3)
    with pytest.raises(GlobalBatchError, match=r"deepspeed.global_batch_size=256 .* over 3 processes"):
        make_plan(preset("elm-small"), processes=3)  # --plan and a run refuse it before anything runs
    odd = RunConfig.model_validate(
        merge_configs(preset("tiny").model_dump(mode="json"), {"tasks": {"batch_size": 6}})
    )
    check_run(odd, 2)
    with pytest.raises(
        GlobalBatchError, match=r"tasks.batch_size=6 examples a step do not split evenly over 4"
    ):
        check_run(odd, 4)
    override = merge_configs(
        preset("elm-small").model_dump(mode="json"), {"tasks": {"per_task": {"rte": {"batch_size": 12}}}}
    )
    with pytest.raises(GlobalBatchError, match=r"tasks.per_task.rte.batch_size=12 .* over 8 processes"):
        check_run(RunConfig.model_validate(override), 8)


def test_accumulation_and_a_global_batch_are_not_both_given():
    with pytest.raises(ValueError, match="gradient_accumulation_steps=4 and deepspeed.global_batch_size=256"):
        DeepSpeedConfig(micro_batch_size=64, gradient_accumulation_steps=4, global_batch_size=256)


@pytest.mark.parametrize(("processes", "shown"), [(1, "64 x 4"), (2, "64 x 2"), (4, "64 x 1"), (8, "32 x 1")])
def test_the_plan_counts_the_same_steps_on_any_process_count(processes, shown):
    plan = make_plan(preset("elm-small"), processes=processes)
    stages = {s.name: s for s in plan.stages}
    assert stages["supernet"].steps == "10 x N/256" and stages["retrain"].steps == "2 x 10 x N/256"
    assert stages["multitask"].steps == "33,330"
    assert plan.notes[0].startswith(
        f"{processes} process(es): 256 blocks of 128 tokens an optimizer step ({shown} accumulated x {processes})"
    )


def test_config_show_of_elm_small(capsys):
    assert cli.main(["config", "show", "--preset", "elm-small"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["deepspeed"]["global_batch_size"] == 256 and shown["deepspeed"]["micro_batch_size"] == 64
    assert shown["search"]["fitness"] == "task" and shown["search"]["fitness_tasks"] == ["mnli"]
    retrain = shown["retrain"]
    assert (retrain["enabled"], retrain["init"], retrain["lm_loss"]) == (True, "multitask", False)
    assert shown["tasks"]["tasks"][-1] == "wnli" and "wnli" not in shown["multitask"]["tasks"]
    config = RunConfig.model_validate(shown)
    assert (
        config.retrain.route()
        == "retrained from the multitask supernet by pearson hidden-state distillation alone, on unmasked inputs"
    )
    assert not config.measures_perplexity  # nothing trains a masked-LM head on this route


# the multitask stage's documented 10% held-out rows (README, `--plan` of elm-small)
HELD_OUT = {
    "mnli": 39_270,
    "qqp": 36_385,
    "qnli": 10_474,
    "sst2": 6_735,
    "cola": 855,
    "stsb": 575,
    "mrpc": 367,
    "rte": 249,
}


def test_the_plan_sizes_the_task_search_from_held_out_rows():
    search = next(s for s in make_plan(preset("elm-small")).stages if s.name == "search")
    assert (
        search.notes[0]
        == "each path scored on 39,270 held-out rows of mnli on the multitask supernet; <= 78,540,000 rows in all"
    )
    assert search.tokens == 2_000 * 39_270 * 128
    everything = merge_configs(
        preset("elm-small").model_dump(mode="json"), {"search": {"fitness_tasks": None}}
    )
    search = next(s for s in make_plan(RunConfig.model_validate(everything)).stages if s.name == "search")
    per_path = sum(HELD_OUT.values())
    assert search.notes[0].startswith(f"each path scored on {per_path:,} held-out rows of mnli, qqp")
    assert f"<= {2_000 * per_path:,} rows in all" in search.notes[0]
    assert [n.split(":")[0] for n in search.notes[1:]] == list(HELD_OUT)


def test_fitness_tasks_must_be_multitask_tasks():
    base = preset("elm-small").model_dump(mode="json")

    def with_tasks(tasks: object) -> RunConfig:
        return RunConfig.model_validate(merge_configs(base, {"search": {"fitness_tasks": tasks}}))

    assert with_tasks(["MNLI", "rte"]).fitness_task_names == ["mnli", "rte"]
    assert with_tasks(None).fitness_task_names == list(HELD_OUT)
    with pytest.raises(ValueError, match="search.fitness_tasks: 'wnli' is not a multitask task"):
        with_tasks(["wnli"])  # a run task, but the multitask stage (and so its held-out rows) has none
    with pytest.raises(ValueError, match="search.fitness_tasks is empty"):
        with_tasks([])


def test_retraining_routes():
    assert RetrainStageConfig().route() == (
        "retrained from the supernet by pearson hidden-state distillation plus the language-modelling loss (weight 1)"
    )
    skip = RetrainStageConfig(enabled=False, init="multitask")
    assert (
        skip.route()
        == "not retrained: extracted from the multitask supernet and fine-tuned on the tasks from there"
    )
    with pytest.raises(ValueError, match="retrain.enabled is false and retrain.init is 'scratch'"):
        RetrainStageConfig(enabled=False, init="scratch")
    plan = make_plan(
        RunConfig.model_validate(
            merge_configs(preset("elm-small").model_dump(mode="json"), {"retrain": {"enabled": False}})
        )
    )
    retrain = next(s for s in plan.stages if s.name == "retrain")
    assert retrain.steps == "-" and "not retrained" in retrain.notes[0]


def test_config_errors_are_the_packages(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: elm-small\ndeepspeed: {gradient_accumulation_steps: 8}\n")
    with pytest.raises(ConfigError, match="deepspeed: deepspeed.gradient_accumulation_steps=8 and"):
        load_config(path)
