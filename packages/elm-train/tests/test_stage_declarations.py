"""Each stage module's declaration against what it names: settings sections of the run config,
artifacts of the layout, earlier stages, loaders that say which stage to run; and the places that
derive from the declarations (the CLI's stage list, the plan's rows)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from elm_train.cli import main
from elm_train.config import ConfigError, RunConfig
from elm_train.pipeline import STAGE_NAMES, STAGES, Run, RunLayout
from elm_train.pipeline.plan import make_plan
from elm_train.presets import preset


def test_each_declaration_names_real_things():
    layout = RunLayout(Path("/nowhere"))
    for position, stage in enumerate(STAGES):
        assert set(stage.settings) <= set(RunConfig.model_fields), stage.name
        assert all(hasattr(layout, artifact) for artifact in stage.writes), stage.name
        assert set(stage.reads) <= set(STAGE_NAMES[:position]), f"{stage.name} reads a later stage"
        assert stage.execute.__module__ == f"elm_train.pipeline.stages.{stage.name}"


@pytest.mark.parametrize("stage", [s for s in STAGES if s.loaders], ids=lambda s: s.name)
def test_a_loader_names_the_stage_to_run_when_its_product_is_missing(tmp_path, stage):
    run = Run.open(preset("tiny-clm"), tmp_path / "run")  # its teacher is a stand-in the stage trains
    for loader in stage.loaders:
        with pytest.raises(ConfigError, match=f"elm-train stage {stage.name}"):
            loader(run)


def test_the_command_lists_every_stage_from_the_declarations():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["stage", "--help"])
    listing = out.getvalue().split("stages, in the order a run takes them:")[1].strip().splitlines()
    assert [line.split()[0] for line in listing] == list(STAGE_NAMES)
    assert "multitask" in STAGE_NAMES  # the stage the hand-written list had left out


def test_the_plan_has_a_row_per_declared_stage_each_from_its_own_estimate():
    plan = make_plan(preset("tiny"))
    assert [s.name for s in plan.stages] == list(STAGE_NAMES)
    assert all(stage.estimate is not None for stage in STAGES)
    assert all(s.tokens_text != "no estimate" for s in plan.stages)
