"""``elm-train run --plan`` for the paper presets, and the hub route's pieces on the stand-ins:
the corpus by hub id, a GLUE task's hub dataset, the GLUE test sets, each from a local copy."""

from __future__ import annotations

import re
from pathlib import Path

import datasets
import pytest

import elm_eval
from elm_train import cli, glue_submission
from elm_train.config import DataConfig, RunConfig, merge_configs
from elm_train.data import DataError, load_corpus
from elm_train.pipeline.plan import make_plan
from elm_train.pipeline.sizing import mirror_rows
from elm_train.presets import preset

from .conftest import BOOKCORPUS, GLUE, WIKIPEDIA, WIKIPEDIA_CONFIG, PaperHub, glue_rows

pytestmark = pytest.mark.paper

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to fetch from the hub fails the test."""
    import huggingface_hub

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the plan tried to download: {args} {kwargs}")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    for name in ("hf_hub_download", "snapshot_download"):
        monkeypatch.setattr(huggingface_hub, name, refuse)
        monkeypatch.setattr(huggingface_hub.file_download, name, refuse, raising=False)


def test_plan_of_elm_small_is_the_readmes(capsys, no_downloads, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert cli.main(["run", "--preset", "elm-small", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "wikimedia/wikipedia (20231101.en): train 6,407,814 documents" in out
    assert "rojagtap/bookcorpus: train 74,004,228 documents" in out
    assert "bert-base-uncased: 109,482,240 parameters" in out
    assert "nyu-mll/glue (mnli, ax, qqp, qnli, sst2, cola, stsb, mrpc, rte, wnli)" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "10 x N/256" in rows["supernet"] and "2 x 10 x N/256" in rows["retrain"]
    assert "<= 2,000 paths" in rows["search"] and "703,862" in rows["tasks"]
    # the task fitness's cost: MNLI's held-out rows (10% of 392,702) for every path
    assert "- search: each path scored on 39,270 held-out rows of mnli on the multitask supernet; " in out
    assert "<= 78,540,000 rows in all" in out
    assert "cola: 8,551 training examples (documented); steps: teacher 801, students 2 x 13,350" in out
    # the README shows this very output (regenerate it there when the plan changes)
    shown = re.search(
        r"`elm-train run --preset elm-small --plan`:\n\n```text\n(.*?)```", README.read_text(), re.S
    )
    assert shown is not None and shown.group(1) == out


@pytest.mark.parametrize("name", ["elm-tiny", "elm-micro"])
def test_plan_of_every_paper_preset(name, no_downloads):
    plan = make_plan(preset(name), processes=4)
    stages = {s.name: s for s in plan.stages}
    assert stages["supernet"].steps == "10 x N/256"  # 256 a step on 4 processes too: 64 x 1 x 4
    assert stages["tasks"].tokens and stages["tasks"].disk
    assert "256 blocks of 128 tokens an optimizer step (64 x 1 accumulated x 4)" in plan.notes[0]


def test_plan_reads_the_local_copies(paper_hub: PaperHub, no_downloads):
    config = RunConfig.model_validate(
        merge_configs(preset("elm-micro").model_dump(mode="json"), {"hub_mirrors": paper_hub.mirrors(4)})
    )
    plan = make_plan(config)
    assert all(d.size.startswith("nothing, read from the local copy") for d in plan.downloads)
    assert f"from 120 documents of {WIKIPEDIA} (in the local copy)" in plan.blocks_note
    # the text-file copy of BookCorpus has no parquet metadata to count: its card's figure
    assert f"74,004,228 documents of {BOOKCORPUS} (documented)" in plan.blocks_note
    tasks = next(s for s in plan.stages if s.name == "tasks")
    assert any(n.startswith("mnli: 40 training examples (in the local copy)") for n in tasks.notes)
    assert mirror_rows(paper_hub.glue, "mnli") == {
        split: glue_rows(split)
        for split in (
            "train",
            "validation_matched",
            "validation_mismatched",
            "test_matched",
            "test_mismatched",
        )
    }


def test_corpus_by_hub_id_from_its_local_copy(paper_hub: PaperHub):
    cfg = DataConfig(source="hub", hub_id=WIKIPEDIA, hub_config=WIKIPEDIA_CONFIG)
    corpus = load_corpus(cfg, {WIKIPEDIA: paper_hub.wikipedia})
    assert len(corpus["train"]) == 114 and len(corpus["validation"]) == 6  # 5% held out, from the end
    with pytest.raises(DataError, match=r"20231101\.xx"):
        load_corpus(cfg.model_copy(update={"hub_config": "20231101.xx"}), {WIKIPEDIA: paper_hub.wikipedia})
    with pytest.raises(DataError, match="text_column 'body' is not a column of wikimedia/wikipedia"):
        load_corpus(cfg.model_copy(update={"text_column": "body"}), {WIKIPEDIA: paper_hub.wikipedia})


def test_corpus_by_hub_id_offline_names_the_id_and_the_way_out(monkeypatch):
    def offline(path, name=None, **_):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    cfg = DataConfig(source="hub", hub_id=WIKIPEDIA, hub_config=WIKIPEDIA_CONFIG)
    with pytest.raises(DataError, match=r"cannot load data.hub_id 'wikimedia/wikipedia' .*hub_mirrors"):
        load_corpus(cfg)


def test_glue_tasks_and_test_sets_from_the_local_copy(paper_hub: PaperHub):
    mirrors = {GLUE: paper_hub.glue}
    mnli = elm_eval.with_hub_mirrors(elm_eval.get_task("mnli"), mirrors)
    data = elm_eval.load_task_data(mnli)
    assert (len(data.train), len(data.validation)) == (glue_rows("train"), glue_rows("validation_matched"))
    assert data.test is not None and data.test.labels is None  # label -1: hidden
    test_set = glue_submission.glue_test_set(mnli, data)
    assert {k: len(v) for k, v in test_set.rows.items()} == {
        "MNLI-m": glue_rows("test_matched"),
        "MNLI-mm": glue_rows("test_mismatched"),
        "AX": glue_rows("test"),
    }
    stsb = elm_eval.load_task_data(elm_eval.with_hub_mirrors(elm_eval.get_task("stsb"), mirrors))
    assert all(isinstance(v, float) and 0 <= v <= 5 for v in stsb.train.labels)
    assert stsb.test is not None and stsb.test.labels is None
    tweets = elm_eval.get_task("tweet-sentiment")
    assert elm_eval.with_hub_mirrors(tweets, mirrors) is tweets  # not a hub task: unchanged


def test_mirrors_are_checked_before_anything_runs(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"preset: elm-micro\nhub_mirrors: {{{GLUE}: {tmp_path / 'nowhere'}}}\n")
    assert cli.main(["run", "--config", str(config), "--plan"]) == 2
    assert "hub_mirrors: the local copy of 'nyu-mll/glue'" in capsys.readouterr().err
    config.write_text("preset: elm-micro\nhub_mirrors: {/data/glue: /data/glue}\n")
    assert cli.main(["config", "validate", str(config)]) == 2
    assert "is not a hub id" in capsys.readouterr().err
