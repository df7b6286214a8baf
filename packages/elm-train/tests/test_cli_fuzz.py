"""Generated bad input for the elm-train command, run in-process: every case either succeeds or
exits 2 with one line that names the file or field at fault. None may print a traceback.

Classes: (1) every leaf field of a real config replaced by values of the wrong type or range,
(2) damaged config files, (3) corpora that cannot be trained on, (4) command-line misuse.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from elm_train.cli import main
from elm_train.presets import preset

BAD_VALUES: list[Any] = ["x", -1, -0.5, 0, 10**12, 1e300, None, [], {"a": 1}, True, ".nan", ".inf"]
SKIP = {"name", "plugins"}  # a name may be any string; plugins are fuzzed as their own class


def leaves(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(tree, dict) and tree and not (prefix and prefix[-1] in {"options", "logits_params"}):
        return [p for key, value in tree.items() for p in leaves(value, (*prefix, key))]
    return [prefix]


def set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return tree


def field_cases() -> list[tuple[str, str]]:
    """(case id, YAML text): one bad value in one field of the tiny preset, 240 drawn at random."""
    paths = [p for p in leaves(preset("tiny").model_dump(mode="json")) if p[0] not in SKIP]
    rng = random.Random(16)
    cases = []
    for path in paths:
        for value in BAD_VALUES:
            text = yaml.safe_dump(set_path({"preset": "tiny"}, path, value))
            if isinstance(value, str) and value.startswith("."):
                text = text.replace(f"'{value}'", value)  # a YAML float, not the string
            cases.append((f"{'.'.join(path)}={value!r}", text))
    rng.shuffle(cases)
    return cases[:240]


FILES: dict[str, bytes] = {
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "latin1": "preset: tiny\nname: caf\xe9\n".encode("latin-1"),
    "not-yaml": b"preset: [tiny\n",
    "a-list": b"- preset\n- tiny\n",
    "a-number": b"42\n",
    "duplicate-key": b"preset: tiny\nseed: 1\nseed: 2\n",
    "unknown-section": b"preset: tiny\nsupernett: {}\n",
    "unknown-field": b"preset: tiny\nsupernet: {optimm: {}}\n",
    "unknown-preset": b"preset: huge\n",
    "preset-a-list": b"preset: [tiny]\n",
    "plugin-missing": b"preset: tiny\nplugins: [no_such_module_here]\n",
    "plugins-not-a-list": b"preset: tiny\nplugins: elm_example_plugin\n",
    "plugin-a-number": b"preset: tiny\nplugins: [3]\n",
    "tab-indent": b"preset: tiny\nsupernet:\n\tlm_weight: 1\n",
    "deep-nesting": b"preset: tiny\nsupernet: " + b"[" * 200 + b"]" * 200 + b"\n",
}


def corpus_cases(tmp: Path) -> dict[str, str]:
    """Config texts pointing at corpora that exist but cannot be trained on."""
    out = {}
    bodies = {
        "nul-bytes": b"\x00" * 4000,
        "latin1-text": "the caf\xe9 opened\n".encode("latin-1") * 50,
        "blank-lines": b"\n \n\t\n" * 40,
        "punctuation-only": b"... ,,, !!! ???\n" * 80,
    }
    for name, body in bodies.items():
        path = tmp / f"{name}.txt"
        path.write_bytes(body)
        out[name] = yaml.safe_dump({"preset": "tiny", "data": {"source": "text", "train_files": [str(path)]}})
    out["missing-file"] = yaml.safe_dump(
        {"preset": "tiny", "data": {"source": "text", "train_files": [str(tmp / "nope.txt")]}}
    )
    out["a-directory"] = yaml.safe_dump(
        {"preset": "tiny", "data": {"source": "text", "train_files": [str(tmp)]}}
    )
    return out


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def assert_clean(code: int, err: str, names: list[str]) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.startswith("elm-train: error: ") and "\n" not in err, err
        assert any(n in err for n in names), (names, err)


@pytest.mark.parametrize(("case", "text"), field_cases(), ids=lambda x: x if len(x) < 60 else None)
def test_bad_field_values(case, text, tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    field = case.split("=")[0]
    code, err = run_cli(["config", "validate", str(path)], capsys)
    assert_clean(code, err, [str(path)])
    if code == 2:  # the file is named; the field too, unless the message is about the whole file
        assert field.split(".")[0] in err or "config" in err, err


@pytest.mark.parametrize("name", sorted(FILES))
def test_damaged_config_files(name, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "plugins"))
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(FILES[name])
    code, err = run_cli(["config", "validate", str(path)], capsys)
    assert code == 2, err
    assert_clean(code, err, [str(path)])


def test_corpora_that_cannot_be_trained_on(tmp_path, capsys):
    cases = corpus_cases(tmp_path)
    for name, text in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        code, err = run_cli(["config", "validate", str(path)], capsys)
        if name in {"punctuation-only"}:
            continue  # text the checks cannot call empty; the data stage counts its tokens
        assert code == 2, (name, err)
        assert_clean(code, err, [str(tmp_path)])


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["run", "--preset", "huge"], ["preset"]),
        (["stage", "nope", "--preset", "tiny", "--run-dir", "{tmp}/a"], ["stage"]),
        (["run", "--preset", "tiny", "--resume", "--run-dir", "{tmp}/missing"], ["--resume", "missing"]),
        (["run", "--preset", "tiny", "--run-dir", "{tmp}/a-file"], ["--run-dir", "a-file"]),
        (["config", "validate", "{tmp}/missing.yaml"], ["missing.yaml"]),
        (["config", "validate", "{tmp}"], [""]),
        (["config", "show", "--preset", "nope"], ["preset"]),
    ],
)
def test_command_line_misuse(argv, names, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a directory")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, err = run_cli(argv, capsys)
    assert code == 2, err
    assert_clean(code, err, names)


def test_the_suite_is_as_large_as_promised():
    assert len(field_cases()) + len(FILES) + 6 + 7 >= 260


def test_a_damaged_saved_config_is_named_on_resume(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_bytes(b"\x00\xff garbage: [")
    code, err = run_cli(["run", "--preset", "tiny", "--resume", "--run-dir", str(run_dir)], capsys)
    assert code == 2 and "config.yaml" in err and "damaged" in err, err
    assert_clean(code, err, ["config.yaml"])


def test_a_budget_no_architecture_meets_stops_before_training(tmp_path, capsys, tiny_teacher_dir):
    """Known once the tokenizer fixes the vocabulary: after the data stage, before the supernet."""
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "preset": "tiny",
                "teacher": {"name_or_path": str(tiny_teacher_dir)},
                "search": {"param_budget": 1000},
            }
        )
    )
    run_dir = tmp_path / "run"
    code, err = run_cli(["run", "--config", str(config), "--run-dir", str(run_dir)], capsys)
    assert "Traceback" not in err
    line = err.splitlines()[-1]  # the data stage's progress bars come first
    assert code == 2 and "search.param_budget=1,000 is below the smallest architecture" in line, err
    assert_clean(code, line, ["search.param_budget"])
    assert not (run_dir / "supernet" / "checkpoints").exists()  # not one training step was taken
