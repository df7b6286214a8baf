"""The architecture's arrows, read from the source's actual imports (every import statement,
module level or inside a function), so a shortcut between layers fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    name: ROOT / "packages" / name / "src" / name.replace("-", "_")
    for name in ("elm-space", "elm-distill", "elm-search", "elm-eval", "elm-train")
}
STAGES = SOURCES["elm-train"] / "pipeline" / "stages"


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names (``from a.b import c`` gives a.b and a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def files(package: str) -> list[Path]:
    return sorted(SOURCES[package].rglob("*.py"))


def test_the_reader_sees_what_python_sees():
    """The reader itself, on a known file: a function-level import counts too."""
    report = STAGES / "report.py"
    assert "elm_train.pipeline.declarations" in imported_modules(report)


def test_no_stage_imports_another_stage():
    stage_modules = {
        f"elm_train.pipeline.stages.{p.stem}" for p in STAGES.glob("*.py") if p.stem != "__init__"
    }
    assert len(stage_modules) == 10  # one per declared stage
    for path in STAGES.glob("*.py"):
        others = {m for m in imported_modules(path) if m.startswith("elm_train.pipeline.stages")}
        others.discard("elm_train.pipeline.stages")
        assert not others, (
            f"{path.name} imports stage modules {sorted(others)}; read the run directory instead"
        )


def test_the_library_never_imports_the_pipeline():
    """The library layer knows nothing of run directories."""
    for path in files("elm-train"):
        if "pipeline" in path.relative_to(SOURCES["elm-train"]).parts or path.name == "cli.py":
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
