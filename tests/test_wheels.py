"""Every package builds a wheel and an sdist with complete metadata, and installs alone from its wheel.

Building: hatchling's PEP 517 hooks, run in one throw-away virtualenv that holds only hatchling
(what ``pip wheel`` / ``python -m build`` would do with build isolation), once per test session
even under xdist (a file lock guards the shared build directory).

Installing alone: each wheel goes into a fresh virtualenv (no system site-packages, no monorepo on
the path, run from an empty directory), with its declared dependencies from the package indexes,
and runs its README's example. Cost decides how far each package goes (measured on 2 busy cores,
pip cache warm): a fresh venv costs about 5 s, torch 2.13 alone about 50 s, transformers and
accelerate another 15 s; elm-eval (datasets, evaluate, scikit-learn, ...) and elm-train (all of
that plus deepspeed and the other four packages) would add minutes. So:

* elm-space and elm-search (no torch) and elm-distill (torch, with its ``hf`` extra) install with
  their full dependencies and run their README examples;
* elm-eval and elm-train install from their wheels with ``--no-deps`` into fresh venvs, which
  checks the wheel's layout, installed metadata and console script; their code runs in the
  editable test environment's own tests.

torch is named as ``torch==2.13.0`` beside the wheel, as the READMEs tell users: an open range
would pull a multi-GB CUDA build where only the CPU wheel lies on disk.
"""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["elm-space", "elm-distill", "elm-search", "elm-eval", "elm-train"]
OURS = {"elm-space", "elm-distill", "elm-search", "elm-eval", "elm-train"}
TORCH = "torch==2.13.0"

pytestmark = [pytest.mark.slow, pytest.mark.wheels]


def project(name: str) -> dict:
    return tomllib.loads((ROOT / "packages" / name / "pyproject.toml").read_text())["project"]


def run(command: list[str], cwd: Path | None = None, timeout: int = 600) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1"
    )
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, command))}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done.stdout


def venv(path: Path) -> Path:
    """A fresh virtualenv without pip in it (the test env's pip installs into it with --python)."""
    run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    return path / "bin" / "python"


def pip_install(python: Path, *requirements: str) -> None:
    """The test env's pip installs into ``python``'s venv; no .pyc compiling (a third of torch's time)."""
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    run([*pip, "install", "-q", "--no-compile", *requirements], timeout=900)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels and sdists of the five packages, built once per session (shared by xdist workers)."""
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is a child of this session's directory; alone, it is that directory.
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "elm-dist"
    with FileLock(str(shared) + ".lock"):
        if (shared / "done").is_file():
            return shared
        shared.mkdir(exist_ok=True)
        builder = venv(shared / "build-env")
        pip_install(builder, "hatchling>=1.20")
        hooks = "import sys, hatchling.build as b; b.build_wheel(sys.argv[1]); b.build_sdist(sys.argv[1])"
        for name in PACKAGES:
            run([str(builder), "-c", hooks, str(shared)], cwd=ROOT / "packages" / name)
        (shared / "done").touch()
    return shared


def artifacts(dist: Path, name: str) -> tuple[Path, Path]:
    version = project(name)["version"]
    stem = f"{name.replace('-', '_')}-{version}"
    wheel, sdist = dist / f"{stem}-py3-none-any.whl", dist / f"{stem}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())
    return wheel, sdist


def parse(text: str) -> email.message.Message:
    return email.parser.Parser().parsestr(text)


def python_blocks(name: str) -> list[str]:
    readme = (ROOT / "packages" / name / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)


@pytest.mark.parametrize("name", PACKAGES)
def test_wheel_and_sdist_metadata_is_complete(dist: Path, name: str) -> None:
    meta = project(name)
    module = name.replace("-", "_")
    wheel, sdist = artifacts(dist, name)
    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
        info_dir = f"{module}-{meta['version']}.dist-info"
        metadata = parse(archive.read(f"{info_dir}/METADATA").decode())
    with tarfile.open(sdist) as archive:
        sdist_files = [member.split("/", 1)[1] for member in archive.getnames() if "/" in member]
        pkg_info = parse(archive.extractfile(f"{module}-{meta['version']}/PKG-INFO").read().decode())

    for headers in (metadata, pkg_info):
        assert headers["Name"] == name
        assert headers["Version"] == meta["version"]
        assert headers["Summary"] == meta["description"]
        assert headers["License-Expression"] == meta["license"] == "Apache-2.0"
        assert headers["Requires-Python"] == meta["requires-python"]
        assert headers["Description-Content-Type"] == "text/markdown"
        assert headers.get_payload().strip() == (ROOT / "packages" / name / "README.md").read_text().strip()
        classifiers = headers.get_all("Classifier")
        assert "Programming Language :: Python :: 3.11" in classifiers
        assert any(c.startswith("Topic :: ") for c in classifiers)
        assert headers.get_all("Author"), "no author"
        urls = dict(url.split(", ", 1) for url in headers.get_all("Project-URL"))
        assert urls and all(url.startswith("https://") for url in urls.values())
        required = headers.get_all("Requires-Dist") or []
        assert {r for r in required if "extra ==" not in r} == set(meta["dependencies"])

    # The wheel holds the package (typed) and nothing else at top level; the sdist can rebuild it.
    assert f"{module}/__init__.py" in files and f"{module}/py.typed" in files
    assert {path.split("/")[0] for path in files} == {module, info_dir}
    assert {"pyproject.toml", "README.md", f"src/{module}/__init__.py"} <= set(sdist_files)
    sources = {
        p.relative_to(ROOT / "packages" / name / "src").as_posix()
        for p in (ROOT / "packages" / name / "src").rglob("*.py")
    }
    assert sources <= {path for path in files if path.endswith(".py")}
    assert f"{info_dir}/licenses/LICENSE" in files and "LICENSE" in sdist_files  # Apache-2.0 ships its text
    if name == "elm-distill":
        assert metadata.get_all("Provides-Extra") == ["hf"]
        extra = {r.split(";")[0] for r in metadata.get_all("Requires-Dist") if re.search(r"extra == .hf.", r)}
        assert extra == set(meta["optional-dependencies"]["hf"])
    if "scripts" in project(name):
        with zipfile.ZipFile(wheel) as archive:
            entry_points = archive.read(f"{info_dir}/entry_points.txt").decode()
        for script in project(name)["scripts"]:
            assert f"{script} = " in entry_points


ALONE = {
    # package -> (what to install beside its wheel, README blocks to run, extra check)
    "elm-space": ([], [0], "import elm_space"),
    "elm-search": (["elm-space"], [0], "import elm_search"),
    "elm-distill": ([TORCH], [0, 1], "from elm_distill.hf import DistillationTrainer"),
}


@pytest.mark.parametrize("name", sorted(ALONE))
def test_installs_alone_from_its_wheel_and_runs_its_readme(dist: Path, tmp_path: Path, name: str) -> None:
    extras, blocks, check = ALONE[name]
    python = venv(tmp_path / "venv")
    wheel, _ = artifacts(dist, name)
    target = f"{name}[hf] @ {wheel.as_uri()}" if name == "elm-distill" else str(wheel)
    # Our own dependencies come from their wheels (by path), never from an index.
    ours = [str(artifacts(dist, extra)[0]) for extra in extras if extra in OURS]
    pip_install(python, target, *ours, *[extra for extra in extras if extra not in OURS])
    work = tmp_path / "work"
    work.mkdir()
    module = name.replace("-", "_")
    where = run([str(python), "-c", f"{check}; import {module}; print({module}.__file__)"], cwd=work).strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), f"{module} imported from {where}, not the venv"
    code = python_blocks(name)
    for index in blocks:
        script = work / f"readme_{index}.py"
        script.write_text(code[index])
        run([str(python), str(script)], cwd=work, timeout=300)
    run([sys.executable, "-m", "pip", "--python", str(python), "check"])


@pytest.mark.parametrize("name", ["elm-eval", "elm-train"])
def test_heavy_packages_install_from_their_wheels(dist: Path, tmp_path: Path, name: str) -> None:
    python = venv(tmp_path / "venv")
    wheel, _ = artifacts(dist, name)
    pip_install(python, "--no-deps", str(wheel))
    module = name.replace("-", "_")
    probe = (
        "import importlib.metadata as m, importlib.util as u, sys;"
        f"d = m.distribution({name!r}); spec = u.find_spec({module!r});"
        "print(d.version); print(spec.origin);"
        "print(' '.join(e.name for e in d.entry_points if e.group == 'console_scripts'))"
    )
    version, origin, scripts = run([str(python), "-c", probe], cwd=tmp_path).splitlines()
    assert version == project(name)["version"]
    assert Path(origin).is_relative_to(tmp_path / "venv")
    assert set(scripts.split()) == set(project(name).get("scripts", {}))
    for script in scripts.split():
        assert (tmp_path / "venv" / "bin" / script).is_file()
