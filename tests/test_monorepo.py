"""The monorepo's promises: five packages, each typed, versioned and importable on its own."""

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["elm-space", "elm-distill", "elm-search", "elm-train", "elm-eval"]


@pytest.mark.parametrize("name", PACKAGES)
def test_package_layout_and_version(name):
    pkg_dir = ROOT / "packages" / name
    meta = tomllib.loads((pkg_dir / "pyproject.toml").read_text())
    module = name.replace("-", "_")
    assert meta["project"]["name"] == name
    assert meta["build-system"]["build-backend"] == "hatchling.build"
    assert (pkg_dir / "src" / module / "py.typed").is_file()
    assert (pkg_dir / "tests").is_dir()
    imported = importlib.import_module(module)
    assert imported.__version__ == meta["project"]["version"]
    # the editable checkout, not a copy
    assert Path(imported.__file__).resolve().is_relative_to(pkg_dir / "src")


def test_dependency_arrows_point_one_way():
    """elm-train composes the others; nothing depends on elm-train, and search never needs torch."""
    deps = {
        name: {
            d.split()[0].split("=")[0].split(">")[0]
            for d in tomllib.loads((ROOT / "packages" / name / "pyproject.toml").read_text())["project"][
                "dependencies"
            ]
        }
        for name in PACKAGES
    }
    for name in PACKAGES:
        assert "elm-train" not in deps[name]
    assert "torch" not in deps["elm-space"] and "torch" not in deps["elm-search"]
    assert deps["elm-distill"].isdisjoint(PACKAGES)
    assert deps["elm-eval"].isdisjoint(PACKAGES)
