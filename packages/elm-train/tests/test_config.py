import pytest
import yaml

from elm_train.config import ConfigError, RunConfig, diff_configs, load_config
from elm_train.pipeline import Run
from elm_train.presets import PRESETS, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_validate_and_round_trip(name, tmp_path):
    config = preset(name)
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config
    assert config.search_space().num_layers >= 3


def test_paper_presets_use_the_paper_spaces():
    small = preset("elm-small")
    assert small.search_space().param_budget == 15_700_000
    assert small.teacher.name_or_path == "bert-base-uncased"
    assert small.task_names == ["mnli", "qqp", "qnli", "sst2", "cola", "stsb", "mrpc", "rte", "wnli"]
    assert small.multitask_task_names == small.task_names[:8]  # the reference's step 2 has no WNLI


def test_yaml_starts_from_a_preset_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"preset": "tiny", "seed": 7, "supernet": {"kd": {"hidden_loss": "mse"}}}))
    config = load_config(path)
    assert config.seed == 7
    assert config.supernet.kd.hidden_loss == "mse"
    assert config.supernet.optim == preset("tiny").supernet.optim  # untouched fields keep the preset's values


def test_bad_configs_name_the_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"preset": "tiny", "deepspeed": {"zero_stage": 5}}))
    with pytest.raises(ConfigError, match=r"bad.yaml: deepspeed.zero_stage: Input should be 0, 1, 2 or 3"):
        load_config(path)
    path.write_text(yaml.safe_dump({"space": "huge"}))
    with pytest.raises(ConfigError, match="space='huge' is not an elm-space preset"):
        load_config(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown run preset 'nope'"):
        preset("nope")


def test_a_run_refuses_another_config(tmp_path):
    first = preset("tiny")
    Run.open(first, tmp_path / "run")
    Run.open(first, tmp_path / "run")  # the same config continues
    second = first.model_copy(update={"seed": 1})
    assert diff_configs(first, second) == ["seed: 42 -> 1"]
    with pytest.raises(ConfigError, match=r"different config[\s\S]*seed: 42 -> 1"):
        Run.open(second, tmp_path / "run")


def test_config_is_all_pydantic():
    with pytest.raises(ValueError, match="extra"):
        RunConfig.model_validate({"unknown_field": 1})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the config file is empty"),
        ("preset: tiny\nseed: 1\nseed: 2\n", "line 3: the key 'seed' is written twice"),
        (
            "preset: tiny\nsupernet: {optim: {lr: 1e10}}\n",
            "supernet.optim.lr: Input should be less than or equal to 1",
        ),
        ("preset: tiny\nretrain: {optim: {lr: .inf}}\n", "retrain.optim.lr: Input should be a finite number"),
        ("preset: tiny\ntasks: {tasks: [nope]}\n", "tasks.tasks: unknown task 'nope'"),
        (
            "preset: tiny\ntasks: {max_seq_length: 99}\n",
            "tasks.max_seq_length=99 is longer than the models' 32 positions",
        ),
        ("preset: tiny\neval: {latency_seq_len: 64}\n", "eval.latency_seq_len=64 is longer"),
        ("preset: tiny\nsearch: {options: {parents: 9}}\n", "population=6 must be larger than parents=9"),
        ("preset: [tiny]\n", r"preset: unknown run preset \['tiny'\]"),
        ("preset: tiny\nspace_overrides: {hidden_size: -4}\n", "space_overrides: .*hidden_size"),
        (
            "preset: tiny\nsearch: {algorithm: annealing}\n",
            "search.algorithm: .*no searcher named 'annealing'",
        ),
        (
            "preset: tiny\ntasks: {logits_loss: dist, logits_params: {tau: 2}}\n",
            "logits_params: loss 'dist' takes no parameter",
        ),
    ],
)
def test_bad_configs_are_refused_before_anything_runs(tmp_path, text, message):
    """Each is refused on load, with the field named, on one line (issue: they failed after training)."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert "\n" not in str(caught.value)
