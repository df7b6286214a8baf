import json

import yaml

from elm_train.cli import main


def test_config_validate_and_show(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"preset": "tiny", "seed": 3}))
    assert main(["config", "validate", str(path)]) == 0
    assert "valid run config 'tiny'" in capsys.readouterr().out
    assert main(["config", "show", "--preset", "tiny"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["space"] == "tiny"


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"preset": "tiny", "data": {"source": "text"}}))
    assert main(["config", "validate", str(path)]) == 2
    assert "data.train_files is empty" in capsys.readouterr().err
    assert main(["stage", "nonsense", "--preset", "tiny", "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown stage 'nonsense'" in capsys.readouterr().err


def test_existing_run_needs_resume(tmp_path, capsys, tiny_teacher_dir):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"preset": "tiny", "teacher": {"name_or_path": str(tiny_teacher_dir)}}))
    run_dir = tmp_path / "run"
    assert main(["stage", "data", "--config", str(config), "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    info = json.loads(out[out.index("{\n") :])
    assert info["splits"]["train"]["blocks"] == 96
    assert main(["run", "--config", str(config), "--run-dir", str(run_dir)]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_unknown_teacher_is_reported(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump({"preset": "tiny", "teacher": {"name_or_path": str(tmp_path / "nowhere")}})
    )
    assert main(["stage", "data", "--config", str(config), "--run-dir", str(tmp_path / "r")]) == 2
    assert "local teacher directory" in capsys.readouterr().err


def test_dry_run_builds_the_full_space_and_steps(capsys):
    import elm_space

    assert main(["run", "--preset", "tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{\n") :])
    space = elm_space.preset("tiny", max_positions=32)
    assert report["space_size"] == space.size()
    assert len(report["step_seconds"]) == 2
    assert 0 < report["loss"] < 10
