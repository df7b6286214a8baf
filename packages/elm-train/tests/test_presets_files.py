"""The presets as YAML files: every file is a preset and every preset a file, each the same run
config it was as Python code, a bad file is named in its error, and the config modules and the
presets import one another without a cycle."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import elm_train.config as config_package
import elm_train.config.files as config_files
from elm_train.config import ConfigError, RunConfig, load_config
from elm_train.presets import PRESET_DIR, PRESETS, preset

# SHA-256 of json.dumps(preset(name).model_dump(mode="json"), sort_keys=True), computed from the
# Python presets (elm_train/presets.py, commit 00c855a) before they moved to YAML files: the files
# must give the same configs, field for field. A deliberate change to a preset changes its hash here.
PYTHON_PRESET_HASHES = {
    "demo": "f2a4719aff611d4e04775372ed322d5073f32583f09ef0dfca22ff2ae2c05f58",
    "tiny": "89d425da41bed6931e7346a76fad97391854ff6e3bc8d11444ae50ab344d14cf",
    "tiny-clm": "cd210c90b5d64ca5b1db774b19d7ac0adc0e53c7ff58c9acccc2f6638939112f",
    "demo-clm": "70fe89b13d51f9fb9a6e14bdd74c8596bdef0a1217b7cd5546f58753a8277778",
    "elm-small": "770af5453ebff743c4f9f166440a94feb9b575361e257276b15bd3869e761a91",
    "elm-tiny": "4a7bedfa5c7a22134df536b4f61e4abf1b52f95f79dd40bd015059cc2acee0fc",
    "elm-micro": "64c925aa0f716aa252866060a46f5c1c04de17e45088f2f60fc66237f40213c4",
}


def test_the_files_are_the_presets():
    files = {path.stem for path in PRESET_DIR.glob("*.yaml")}
    assert files == set(PRESETS) == set(PYTHON_PRESET_HASHES)
    assert len(PRESETS) == len(set(PRESETS))


@pytest.mark.parametrize("path", sorted(PRESET_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_file_is_a_run_config(path):
    """A preset file is a config file a user could pass to ``--config``."""
    config = load_config(path)
    assert isinstance(config, RunConfig)
    assert config.name == path.stem
    assert config == preset(path.stem)


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_is_the_config_it_was_in_python(name):
    dump = json.dumps(preset(name).model_dump(mode="json"), sort_keys=True)
    assert hashlib.sha256(dump.encode()).hexdigest() == PYTHON_PRESET_HASHES[name]


@pytest.fixture
def preset_copy(tmp_path, monkeypatch):
    """A writable copy of the preset folder that ``preset`` reads instead of the shipped one."""
    folder = tmp_path / "presets"
    shutil.copytree(PRESET_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(config_files, "PRESET_DIR", folder)
    return folder


def test_an_unknown_key_in_a_preset_file_names_the_file(preset_copy):
    tiny = preset_copy / "tiny.yaml"
    tiny.write_text(tiny.read_text().replace("supernet:\n", "supernet:\n  checkpoint_evry: 3\n", 1))
    with pytest.raises(ConfigError, match=r"tiny\.yaml: supernet\.checkpoint_evry: Extra inputs") as err:
        preset("tiny")
    assert str(err.value).startswith(str(tiny))
    # a preset that starts from it names both files
    with pytest.raises(ConfigError, match=r"tiny-clm\.yaml: .*tiny\.yaml: supernet\.checkpoint_evry"):
        preset("tiny-clm")
    assert preset("demo").name == "demo"  # the other presets are untouched


def test_a_preset_that_starts_from_itself_is_refused(preset_copy):
    tiny = preset_copy / "tiny.yaml"
    tiny.write_text("preset: tiny-clm\n" + tiny.read_text())
    with pytest.raises(ConfigError, match="tiny -> tiny-clm -> tiny starts from itself"):
        preset("tiny")


def _runtime_imports(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, at module level or in a function, but
    not under ``if TYPE_CHECKING:`` (``from a.b import c`` gives a.b and a.b.c)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return names


def test_the_config_modules_and_the_presets_import_no_cycle():
    """Among ``elm_train.config``, its modules and ``elm_train.presets`` the imports form no cycle
    (importing ``elm_train.config`` counts as importing its ``__init__``); and no module of the
    package imports the package itself, whose ``__init__`` is still running when they load."""
    config_dir = Path(config_package.__file__).parent
    sources = {
        "elm_train.config" if p.stem == "__init__" else f"elm_train.config.{p.stem}": p
        for p in config_dir.glob("*.py")
    }
    sources["elm_train.presets"] = PRESET_DIR / "__init__.py"
    graph = {name: _runtime_imports(path) & set(sources) for name, path in sources.items()}
    assert graph["elm_train.config"] >= {"elm_train.config.files", "elm_train.config.run"}
    assert "elm_train.config.files" in graph["elm_train.presets"]  # the reader sees the edges
    for name, imported in graph.items():
        if name.startswith("elm_train.config."):
            assert "elm_train.config" not in imported, f"{name} imports its own package"
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")
