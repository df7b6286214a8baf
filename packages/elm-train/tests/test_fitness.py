"""The search fitnesses on a tiny trained supernet: each against an independent computation."""

from __future__ import annotations

import pytest
import torch

import elm_space
from elm_train.config import DynamicConfig, SearchStageConfig, TeacherConfig
from elm_train.pipeline import Run, run_stage, stages
from elm_train.presets import preset
from elm_train.search.fitness import ParamsFitness, SupernetFitness, WpcaFitness, build_fitness
from elm_train.training.pca import pca_count


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_teacher_dir):
    config = preset("tiny").model_copy(update={"teacher": TeacherConfig(name_or_path=str(tiny_teacher_dir))})
    run = Run.open(config, tmp_path_factory.mktemp("fitness") / "run")
    run_stage(run, "supernet", echo=lambda _: None)
    from elm_train.training.batches import eval_batches

    return run, stages.supernet.trained_supernet(run), eval_batches(run.blocks["validation"], 8, 2)


def test_wpca_is_the_layer_mean_pca_count_times_parameters(trained):
    _, supernet, val = trained
    dyn = DynamicConfig(eta_bert=0.99, eta_mobile=0.9)
    fitness = WpcaFitness(supernet.model, val, dyn)
    arch = elm_space.sample(supernet.space, 3)
    # independently: run the path, count components of each FFN's pre-activations over real tokens
    counts = []
    with torch.no_grad():
        for batch in val:
            mask = batch["attention_mask"].bool()
            out = supernet.model.supernet(
                batch["input_ids"],
                arch=arch,
                attention_mask=batch["attention_mask"],
                output_ffn_pre_activations=True,
            )
            for choice, pre in zip(arch.layers, out.ffn_pre_activations, strict=True):
                eta = 0.99 if choice.kind.value == "bert" else 0.9
                counts.append(pca_count(pre[mask], eta))
    expected = sum(counts) / len(counts) * elm_space.count_params(arch)
    assert fitness(arch) == pytest.approx(expected, rel=1e-12)
    assert 1 <= fitness.pca_mean(arch) <= max(c.ffn_width for c in arch.layers)
    assert fitness.maximize and fitness.name == "wpca"


def test_params_and_kd_fitness(trained):
    run, supernet, val = trained
    arch = elm_space.sample(supernet.space, 5)
    assert ParamsFitness()(arch) == elm_space.count_params(arch)
    kd = SupernetFitness(supernet.model, run.teacher_features, val)
    assert not kd.maximize and kd(arch) > 0 and kd(arch) == kd(arch)  # deterministic in eval mode


class Inputs:
    """FitnessInputs that record which input a fitness asked for."""

    def __init__(self, run, supernet, val):
        self.asked: list[str] = []
        self.seed, self.pad_id, self.dynamic = 0, 0, run.config.supernet.dynamic
        self._values = {"supernet": supernet.model, "teacher": run.teacher_features, "validation": val}

    def __getattr__(self, name):
        if name.startswith("_") or name not in self._values:
            raise AttributeError(name)
        self.asked.append(name)
        return self._values[name]


@pytest.mark.parametrize(
    ("name", "cls", "asks"),
    [
        ("kd", SupernetFitness, ["supernet", "teacher", "validation"]),
        ("wpca", WpcaFitness, ["supernet", "validation"]),
        ("params", ParamsFitness, []),
    ],
)
def test_the_config_chooses_the_fitness_and_it_loads_only_what_it_needs(trained, name, cls, asks):
    run, supernet, val = trained
    inputs = Inputs(run, supernet, val)
    fitness = build_fitness(SearchStageConfig(fitness=name, wpca_batches=1), inputs)
    assert isinstance(fitness, cls)
    assert inputs.asked == asks
    if name == "wpca":
        assert len(fitness.val) == 1


def test_search_stage_runs_with_the_training_free_fitness(tmp_path, tiny_teacher_dir):
    config = preset("tiny").model_copy(update={"teacher": TeacherConfig(name_or_path=str(tiny_teacher_dir))})
    config = type(config).model_validate(
        {**config.model_dump(), "search": {**config.search.model_dump(), "fitness": "wpca"}}
    )
    run = Run.open(config, tmp_path / "run")
    info = run_stage(run, "search", echo=lambda _: None)
    assert info["fitness"] == "wpca" and info["wpca"] > 0
