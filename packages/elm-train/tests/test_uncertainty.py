"""The report's uncertainty: per-example predictions, the paired bootstrap and fine-tuning seeds."""

import json
import re
import statistics

import pytest

import elm_eval
from elm_train.config import TeacherConfig
from elm_train.pipeline import Run, run_all, stages
from elm_train.pipeline.plan import make_plan
from elm_train.pipeline.stages.tasks import seed_name
from elm_train.pipeline.uncertainty import verdict
from elm_train.presets import preset

SEEDS = 2


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_teacher_dir):
    tiny = preset("tiny")
    config = tiny.model_copy(
        update={
            "teacher": TeacherConfig(name_or_path=str(tiny_teacher_dir)),
            "tasks": tiny.tasks.model_copy(update={"seeds": SEEDS}),
        }
    )
    run = Run.open(config, tmp_path_factory.mktemp("uncertainty") / "run")
    run_all(run, echo=lambda _: None)
    return run


def _predictions(run, task, who):
    return json.loads(run.layout.task_predictions(task, who).read_text())


@pytest.mark.slow
def test_predictions_are_the_selected_models_and_seeds_fine_tune_again(finished):
    run = finished
    for task in run.config.task_names:
        for who in [
            "teacher",
            *(seed_name(s, k) for s in stages.retrain.students(run) for k in range(SEEDS)),
        ]:
            p = _predictions(run, task, who)
            # elm-eval's per-example predictions of the saved model score what the stage selected
            assert p["score"] == pytest.approx(p["selection_score"], abs=1e-12)
            assert elm_eval.compute_metric(p["metric"], p["predictions"], p["labels"])[0] == p["score"]
        for student in stages.retrain.students(run):
            first, second = (_predictions(run, task, seed_name(student, k)) for k in range(SEEDS))
            assert first["labels"] == second["labels"]
            # another seed is another fine-tuning (new head init, order, dropout): other weights
            assert (run.layout.task_model(task, seed_name(student, 1)) / "config.json").is_file()
            a = (run.layout.task_model(task, student) / "model.safetensors").read_bytes()
            b = (run.layout.task_model(task, seed_name(student, 1)) / "model.safetensors").read_bytes()
            assert a != b
    # the elm-eval results (the comparison table) stay one per model and task: the first seed's
    results = [elm_eval.load_result(p) for p in run.layout.results.glob("*.json")]
    task_models = sorted(r.model for r in results if r.kind == "task")
    assert task_models == sorted(["teacher", *stages.retrain.students(run)] * len(run.config.task_names))


@pytest.mark.slow
def test_report_bootstrap_and_seed_spread_are_computed_from_the_predictions(finished):
    run = finished
    info = json.loads(run.layout.report_json.read_text())["uncertainty"]
    tasks = run.config.task_names
    for other in ("baseline", "teacher"):
        boot = info[f"found_vs_{other}"]
        for i, task in enumerate(tasks):
            mine, theirs = _predictions(run, task, "found"), _predictions(run, task, other)
            expected = elm_eval.paired_bootstrap(
                mine["metric"],
                mine["labels"],
                mine["predictions"],
                theirs["predictions"],
                resamples=info["resamples"],
                seed=run.config.seed + i,
            )
            assert boot["tasks"][task] == expected.model_dump(mode="json")
            assert boot["tasks"][task]["difference"] == pytest.approx(mine["score"] - theirs["score"])
            assert boot["tasks"][task]["low"] <= boot["tasks"][task]["high"]
    seeds = info["fine_tuning_seeds"]
    assert seeds["seeds"] == [run.config.seed, run.config.seed + 1]
    for student in stages.retrain.students(run):
        for task in tasks:
            s = seeds["scores"][student][task]
            per_seed = [_predictions(run, task, seed_name(student, k))["score"] for k in range(SEEDS)]
            assert s["per_seed"] == per_seed
            assert s["mean"] == pytest.approx(statistics.fmean(per_seed))
            assert s["std"] == pytest.approx(statistics.stdev(per_seed))
    diff = seeds["found_minus_baseline"]
    for k in range(SEEDS):
        found = statistics.fmean(seeds["scores"]["found"][t]["per_seed"][k] for t in tasks)
        base = statistics.fmean(seeds["scores"]["baseline"][t]["per_seed"][k] for t in tasks)
        assert diff["per_seed"][k] == pytest.approx(found - base)
    assert diff["ci"][0] <= diff["mean"] <= diff["ci"][1]
    report = run.layout.report_markdown.read_text()
    assert info["verdict"] and f"**{info['verdict']}**" in report
    assert "Found minus baseline, mean task score" in info["verdict"] and "noise" in info["verdict"]


def _boot(low: float, high: float, difference: float = 0.01) -> dict:
    return {"mean": {"examples": 1000, "low": low, "high": high, "difference": difference}}


def test_verdict_reads_the_intervals():
    one_seed = verdict({"found_vs_baseline": _boot(-0.02, 0.04), "fine_tuning_seeds": None})
    assert "inside the noise" in one_seed and "[-0.0200, +0.0400] includes 0" in one_seed
    assert "set tasks.seeds" in one_seed
    clear = verdict({"found_vs_baseline": _boot(0.01, 0.05), "fine_tuning_seeds": None})
    assert "outside the noise of the evaluation examples" in clear and "not yet a verdict" in clear
    seeds = {"found_minus_baseline": {"n": 3, "mean": 0.03, "ci": [-0.01, 0.07]}}
    mixed = verdict({"found_vs_baseline": _boot(0.01, 0.05), "fine_tuning_seeds": seeds})
    assert "inside the noise: the seeds' interval includes 0" in mixed
    seeds["found_minus_baseline"]["ci"] = [0.005, 0.055]
    both = verdict({"found_vs_baseline": _boot(0.01, 0.05), "fine_tuning_seeds": seeds})
    assert both.endswith("outside the noise: both intervals exclude 0.")
    assert verdict({"found_vs_baseline": None}) is None


def test_plan_counts_every_fine_tuning_seed():
    tiny = preset("tiny")
    plans = {}
    for seeds in (1, 3):
        config = tiny.model_copy(update={"tasks": tiny.tasks.model_copy(update={"seeds": seeds})})
        plans[seeds] = next(s for s in make_plan(config).stages if s.name == "tasks")
    one, three = plans[1], plans[3]
    found = re.search(r"steps: teacher (\d+), students 2 x (\d+)", " ".join(one.notes))
    assert found is not None
    teacher, student = int(found.group(1)), int(found.group(2))
    tasks = len(tiny.task_names)
    # each seed fine-tunes both students again; the teacher once
    assert one.steps == f"{tasks * (teacher + 2 * student):,}"
    assert three.steps == f"{tasks * (teacher + 6 * student):,}"
    assert f"students 6 (3 seeds of 2) x {student}" in " ".join(three.notes)
    assert three.disk > one.disk
