"""The architecture's arrows, read from the source's actual imports (every import statement,
module level or inside a function), so a shortcut between layers fails here.

Imports under ``if TYPE_CHECKING:`` are left out: they never run, and annotations may name a type
from anywhere. Everything else counts, also an import inside a function: it runs when the
function is called, and a cycle hidden there is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    name: ROOT / "packages" / name / "src" / name.replace("-", "_")
    for name in ("elm-space", "elm-distill", "elm-search", "elm-eval", "elm-train")
}
TRAIN = SOURCES["elm-train"]
STAGES = TRAIN / "pipeline" / "stages"

WING_OF_TOP_LEVEL = {
    "_moved": "facade",
    "__init__": "facade",
    "config": "settings",
    "presets": "settings",
    "data": "inputs",
    "teacher": "inputs",
    "tokenizer": "inputs",
    "deployment": "outputs",
    "glue_submission": "outputs",
    "plots": "outputs",
    "dryrun": "outputs",
    "cli": "command",
}
"""The wing of each module or sub-package at the top of elm_train that is not a wing's folder."""

WING_ORDER = [
    "runtime",
    "models",
    "settings",
    "inputs",
    "training",
    "search",
    "outputs",
    "pipeline",
    "command",
]
"""Wings from the bottom up: a module imports only from its own wing or the wings below it
(the facade, ``elm_train/__init__.py``, names everything and is imported by nothing of ours)."""


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the statements under ``if TYPE_CHECKING:``."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imported_modules(path: Path, is_module: Callable[[str], bool] | None = None) -> set[str]:
    """Every module an import statement in ``path`` names, except under ``if TYPE_CHECKING:``.

    ``from a.b import c`` gives a.b and a.b.c; given ``is_module``, a.b.c alone when it is a module
    (the statement takes the sub-module, not a name defined in a.b's ``__init__``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _type_checking_blocks(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                names.add(name)
                if is_module is None or not is_module(name):
                    names.add(node.module)
    return names


def files(package: str) -> list[Path]:
    return sorted(SOURCES[package].rglob("*.py"))


def module_name(path: Path, source: Path) -> str:
    parts = path.relative_to(source.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph(source: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (names resolved to real modules)."""
    modules = {module_name(p, source): p for p in sorted(source.rglob("*.py"))}
    return {
        name: {m for m in imported_modules(path, modules.__contains__) if m in modules and m != name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def wing(module: str) -> str:
    """The wing of an elm_train module (see :data:`WING_ORDER`)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "facade"
    top = parts[1]
    if top in WING_ORDER:
        return top
    if top not in WING_OF_TOP_LEVEL:
        raise AssertionError(f"elm_train.{top} belongs to no wing; add it to WING_OF_TOP_LEVEL")
    return WING_OF_TOP_LEVEL[top]


def test_the_reader_sees_what_python_sees(tmp_path):
    """The reader itself: an import inside a function counts, one under TYPE_CHECKING does not."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from a.typed import T\n"
        "def f():\n    from a.b import c\n    import d.e\n"
    )
    assert imported_modules(probe) == {"typing", "typing.TYPE_CHECKING", "a.b", "a.b.c", "d.e"}
    # taking a sub-module from a package is an arrow to the sub-module, not to the package's __init__
    assert "a.b" not in imported_modules(probe, {"a.b.c"}.__contains__)


@pytest.mark.parametrize("package", sorted(SOURCES))
def test_no_import_cycles(package):
    assert cycles(module_graph(SOURCES[package])) == []


def test_a_cycle_hidden_inside_a_function_is_found(tmp_path):
    """The same check on a copy of elm_train with one import inside a function that closes a loop
    (the runtime's atomic files importing the pipeline's layout, which the runtime sits below)."""
    copy = tmp_path / "elm_train"
    shutil.copytree(TRAIN, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert cycles(module_graph(copy)) == []
    fsio = copy / "runtime" / "fsio.py"
    fsio.write_text(
        fsio.read_text() + "\n\ndef _where():\n    from elm_train.pipeline import plan\n\n    return plan\n"
    )
    found = cycles(module_graph(copy))
    assert found and any("elm_train.runtime.fsio" in group for group in found)
    assert any("elm_train.pipeline.plan" in group for group in found)


def _elm_train_imports() -> Iterator[tuple[Path, str, str]]:
    for path in files("elm-train"):
        name = module_name(path, TRAIN)
        for target in imported_modules(path):
            if target.split(".")[0] == "elm_train" and target != "elm_train":
                yield path, name, target


def test_wings_point_one_way():
    """Each import goes to the module's own wing or a wing below it (:data:`WING_ORDER`)."""
    bad = []
    for path, name, target in _elm_train_imports():
        if wing(name) == "facade":
            continue
        here, there = WING_ORDER.index(wing(name)), WING_ORDER.index(wing(target))
        if there > here:
            bad.append(f"{path.relative_to(TRAIN)} ({wing(name)}) imports {target} ({wing(target)})")
    assert not bad, "imports against the wings' order:\n" + "\n".join(bad)


def test_nothing_imports_the_facade():
    """``elm_train/__init__.py`` names everything lazily; a module of ours taking a name from it
    (``from elm_train import SupernetTraining``) would hide an arrow, so only sub-modules may be
    imported from it."""
    for path in files("elm-train"):
        if path.name == "__init__.py" and path.parent == TRAIN:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "elm_train":
                names = {alias.name for alias in node.names}
                real = {n for n in names if (TRAIN / n).is_dir() or (TRAIN / f"{n}.py").is_file()}
                assert names == real, f"{path} imports {sorted(names - real)} from the elm_train facade"


def test_stages_import_only_the_stages_they_read():
    """A stage loads an earlier stage's product through that stage's own loader, and only of a
    stage it declares it reads: the arrows between stages are the pipeline's order."""
    from elm_train.pipeline.stages import STAGES

    reads = {s.name: set(s.reads) for s in STAGES}
    assert sorted(p.stem for p in stage_modules()) == sorted(reads)  # one module per stage
    for path in stage_modules():
        used = {
            m.split(".")[3]
            for m in imported_modules(path)
            if m.startswith("elm_train.pipeline.stages.") and len(m.split(".")) > 3
        }
        used.discard(path.stem)
        assert used <= reads[path.stem], (
            f"{path.name} imports stages {sorted(used - reads[path.stem])} that its declaration does not read"
        )


def stage_modules() -> list[Path]:
    return sorted(p for p in STAGES.glob("*.py") if p.stem != "__init__")


def test_the_library_never_imports_the_pipeline():
    """The library layer knows nothing of run directories."""
    for path in files("elm-train"):
        if "pipeline" in path.relative_to(TRAIN).parts or path.name == "cli.py":
            continue
        bad = {m for m in imported_modules(path) if m.startswith("elm_train.pipeline")}
        assert not bad, f"{path} (library layer) imports the pipeline: {sorted(bad)}"


@pytest.mark.parametrize("package", ["elm-space", "elm-distill", "elm-search", "elm-eval"])
def test_nothing_imports_elm_train(package):
    for path in files(package):
        bad = {m for m in imported_modules(path) if m.split(".")[0] == "elm_train"}
        assert not bad, f"{path} imports {sorted(bad)}: nothing may depend on elm-train"


@pytest.mark.parametrize("package", ["elm-space", "elm-search"])
def test_space_and_search_never_import_torch(package):
    for path in files(package):
        bad = {m for m in imported_modules(path) if m.split(".")[0] == "torch"}
        assert not bad, f"{path} imports torch"


@pytest.mark.parametrize("package", ["elm-space", "elm-distill", "elm-search", "elm-eval"])
def test_arrows_point_one_way_between_the_other_packages(package):
    """elm-space stands alone; distill and eval use no other package of ours; search uses space."""
    allowed = {"elm-space": set(), "elm-distill": set(), "elm-eval": set(), "elm-search": {"elm_space"}}[
        package
    ]
    ours = {"elm_space", "elm_distill", "elm_search", "elm_eval", "elm_train"} - {package.replace("-", "_")}
    for path in files(package):
        used = {m.split(".")[0] for m in imported_modules(path)} & ours
        assert used <= allowed, f"{path} imports {sorted(used - allowed)}"
