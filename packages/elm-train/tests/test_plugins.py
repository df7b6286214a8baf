"""Extension by registration: a plugin module's loss and searcher, named in a run config and used
end to end on the tiny preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import elm_distill
from elm_search import SearchResult
from elm_train.cli import main
from elm_train.config import ConfigError, load_config

PLUGINS = Path(__file__).parent / "plugins"


def plugin_config(tmp_path: Path, teacher: Path, **extra: object) -> Path:
    fields = {
        "preset": "tiny",
        "plugins": ["elm_example_plugin"],
        "teacher": {"name_or_path": str(teacher)},
        "supernet": {"kd": {"hidden_loss": "cosine"}},
        "retrain": {"kd": {"hidden_loss": "cosine"}},
        "search": {"algorithm": "greedy", "options": {"neighbours": 2}, "fitness": "fewest-layers"},
        "baseline": {"enabled": False},
        "tasks": {"tasks": []},
        "eval": {"lm": False, "latency": False},
        **extra,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(fields))
    return path


def test_unknown_names_are_refused_when_validated(tmp_path, monkeypatch, capsys, tiny_teacher_dir):
    monkeypatch.syspath_prepend(str(PLUGINS))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"preset": "tiny", "supernet": {"kd": {"hidden_loss": "cosine-typo"}}}))
    with pytest.raises(ConfigError, match="no loss named 'cosine-typo'"):
        load_config(path)
    path.write_text(yaml.safe_dump({"preset": "tiny", "search": {"algorithm": "annealing"}}))
    with pytest.raises(ConfigError, match="no searcher named 'annealing'"):
        load_config(path)  # a name no module registered
    path.write_text(yaml.safe_dump({"preset": "tiny", "plugins": ["no_such_plugin_module"]}))
    with pytest.raises(ConfigError, match="plugins: cannot import 'no_such_plugin_module'"):
        load_config(path)
    path.write_text(yaml.safe_dump({"preset": "tiny", "search": {"fitness": "fewest-layer"}}))
    assert main(["config", "validate", str(path)]) == 2  # checked before any stage runs
    assert "search.fitness: 'fewest-layer' is not a registered fitness" in capsys.readouterr().err
    bad_option = plugin_config(
        tmp_path, tiny_teacher_dir, search={"algorithm": "greedy", "options": {"neighbours": 0}}
    )
    with pytest.raises(ConfigError, match="search.options.neighbours"):
        load_config(bad_option)


def test_plugin_loss_and_searcher_run_end_to_end(tmp_path, monkeypatch, tiny_teacher_dir):
    monkeypatch.syspath_prepend(str(PLUGINS))
    config = plugin_config(tmp_path, tiny_teacher_dir)
    loaded = load_config(config)
    assert loaded.supernet.kd.hidden_loss == "cosine" and loaded.search.algorithm == "greedy"
    run_dir = tmp_path / "run"
    assert main(["run", "--config", str(config), "--run-dir", str(run_dir)]) == 0

    result = SearchResult.load(run_dir / "search" / "result.json")
    assert result.algorithm == "greedy"
    assert result.objectives[0].name == "depth"  # the plugin's fitness, built by the one factory
    assert result.best is not None
    assert len(result.best.architecture.layers) == min(len(r.architecture.layers) for r in result.records)
    assert {r.origin for r in result.records} == {"random", "greedy"}
    assert len({r.hash for r in result.records}) == result.evaluations

    # the objective really used the plugin's loss: the logged terms are named after it, and a
    # cosine loss lies in [0, 2] where the default Pearson MSE of these features would not
    rows = [r for r in (run_dir / "metrics.jsonl").read_text().splitlines() if '"stage": "supernet"' in r]
    assert any("layers.cosine" in r for r in rows)
    assert elm_distill.get_loss("cosine") is not None
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert 0.0 <= float(elm_distill.get_loss("cosine")(a, b, None)) <= 2.0
    assert (run_dir / "retrain" / "found" / "model" / "config.json").is_file()
    assert (run_dir / "report" / "report.md").is_file()
