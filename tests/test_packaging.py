"""Packaging: the build requirements match pyproject's metadata, and the sdist is complete enough to test from.

The sdist is built with setuptools' PEP 517 hook (what ``python -m build --sdist`` calls), without isolation or
network, from a copy of the source tree so the checkout gets no ``*.egg-info``. It also runs when the suite itself
runs from an unpacked sdist: the expectations are read from the tree being packed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
#: what may sit at the top of the sdist (besides its own PKG-INFO, setup.cfg and egg-info)
TOP_LEVEL = {
    "hrnet_backbones",
    "tests",
    "benchmarks",
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
}
TOP_LEVEL |= {"MANIFEST.in", "PKG-INFO", "setup.cfg", "hrnet_backbones.egg-info"}


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _shipped_sources(root: Path) -> set[str]:
    """The files of ``root`` the sdist must hold: the package's modules and marker, every file of tests/ (with
    conftest, helpers and fixtures) and benchmarks/, and the top-level documents."""
    files = {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in"}
    package = root / "hrnet_backbones"
    files |= {p.relative_to(root).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    files.add("hrnet_backbones/py.typed")
    for folder in ("tests", "benchmarks"):
        files |= {
            p.relative_to(root).as_posix()
            for p in (root / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        }
    return files


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    """The sdist of this tree, built from a copy (hidden folders such as .git or a CI venv, and earlier build
    outputs, are left behind; caches such as __pycache__ are copied, so their exclusion is tested)."""
    work = tmp_path_factory.mktemp("sdist")
    top_ignored = {"build", "dist", "bench-results"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        if Path(folder) != ROOT:
            return set()
        return {n for n in names if n.startswith(".") or n in top_ignored or n.endswith(".egg-info")}

    source = work / "source"
    shutil.copytree(ROOT, source, ignore=ignore)
    out = work / "dist"
    hook = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    result = subprocess.run(
        [sys.executable, "-c", hook, str(out)], cwd=source, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out / result.stdout.strip().splitlines()[-1]


def _members(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    prefix = names[0].split("/", 1)[0] + "/"
    return {n.removeprefix(prefix) for n in names}


def test_build_backend_is_new_enough_for_the_spdx_license_string():
    pyproject = _pyproject()
    project, build = pyproject["project"], pyproject["build-system"]
    assert isinstance(project["license"], str)  # an SPDX expression (PEP 639): setuptools reads it from 77 on
    (setuptools,) = (Requirement(r) for r in build["requires"] if Requirement(r).name == "setuptools")
    assert not setuptools.specifier.contains("76.1.0") and setuptools.specifier.contains("77.0.1")


def test_sdist_holds_the_package_tests_with_their_fixtures_and_the_changelog(sdist):
    members = _members(sdist)
    missing = _shipped_sources(ROOT) - members
    assert not missing, sorted(missing)
    assert {"tests/conftest.py", "tests/helpers.py", "tests/fixture_data.py", "CHANGELOG.md"} <= members
    assert any(m.startswith("tests/fixtures/official/") for m in members)


def test_sdist_holds_no_caches_or_checkout_leftovers(sdist):
    members = _members(sdist)
    assert not [m for m in members if "__pycache__" in m or m.endswith((".pyc", ".pyo"))]
    assert {m.split("/", 1)[0] for m in members} <= TOP_LEVEL


def test_sdist_metadata_carries_the_license_expression(sdist):
    with tarfile.open(sdist) as tar:
        pkg_info = next(
            m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
        )
        metadata = tar.extractfile(pkg_info).read().decode()
    assert "License-Expression: MIT" in metadata.splitlines()


@pytest.mark.slow  # a second pytest process: its imports alone take seconds
def test_tests_run_from_the_unpacked_sdist(sdist, tmp_path):
    """A few test files that need conftest, the helper modules and the fixtures pass in the unpacked sdist, run
    from its root, where its own copy of the package is the one imported."""
    with tarfile.open(sdist) as tar:
        # the "data" filter (Python >= 3.10.12) refuses links and paths out of the folder
        tar.extractall(tmp_path, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (unpacked,) = tmp_path.iterdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    tests = [
        "tests/test_keypoints_loss.py",  # conftest, tests/fixtures/codecs
        "tests/test_fixtures_backbone.py::test_branches_reproduce_the_official_outputs[pose]",  # helpers, official
        "tests/test_fileio.py",
    ]
    # one process: report which copy of the package is imported, then run pytest on the unpacked sdist's tests
    run = "import sys, pytest, hrnet_backbones; print(hrnet_backbones.__file__); sys.exit(pytest.main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", run, "-q", "-p", "no:cacheprovider", "-n", "0", *tests],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert Path(result.stdout.splitlines()[0]).parent.parent == unpacked
    assert " passed" in result.stdout
