"""The install puts one name into site-packages: ``unibind``. A wheel is built from the checkout and read."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("schema", "indexer", "retrieval", "migrations")


def isolation_flags() -> list[str]:
    """``--no-build-isolation`` when this interpreter already has what pyproject's ``[build-system]`` requires
    (``setuptools>=77``), so pip builds with it instead of downloading a build environment; else no flag (pip
    isolates the build and fetches setuptools)."""
    try:
        import tomllib
        from importlib.metadata import PackageNotFoundError, version

        from packaging.requirements import Requirement
    except ImportError:  # Python 3.10 (no tomllib) or no packaging: let pip isolate
        return []
    for raw in tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]:
        requirement = Requirement(raw)
        try:
            if not requirement.specifier.contains(version(requirement.name), prereleases=True):
                return []
        except PackageNotFoundError:
            return []
    return ["--no-build-isolation"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy: setuptools' build/ folder in a checkout keeps modules that have since moved away
    src = tmp_path_factory.mktemp("src") / "unibind"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "unibind-data", "__pycache__", ".pytest_cache", ".schemathesis"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation_flags(), "--wheel-dir", str(out),
         str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (found,) = out.glob("unibind-*.whl")
    return found


def test_the_build_uses_the_interpreter_s_setuptools_when_it_is_new_enough() -> None:
    from importlib.metadata import version

    packaging_version = pytest.importorskip("packaging.version")
    pytest.importorskip("tomllib")
    new_enough = packaging_version.Version(version("setuptools")) >= packaging_version.Version("77")
    assert isolation_flags() == (["--no-build-isolation"] if new_enough else [])


@pytest.mark.slow
def test_every_module_of_the_wheel_is_under_unibind(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"unibind", next(t for t in tops if t.endswith(".dist-info"))}, sorted(tops)
    # no stray unibind/__init__.py from elsewhere: unibind is the namespace of the four folders
    assert {n.split("/")[1] for n in names if n.startswith("unibind/")} == set(FOLDERS)


@pytest.mark.slow
def test_the_wheel_holds_every_source_file_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in {".py", ".mako", ".html", ".js", ".css"}:
                name = "unibind/" + path.relative_to(ROOT).as_posix()
                if name not in names:
                    missing.append(name)
    assert not missing, f"not in the wheel (add the package to pyproject's packages list): {missing}"
    extra = sorted(n for n in names if n.startswith("unibind/") and n.endswith(".py")
                   and not (ROOT / n.removeprefix("unibind/")).is_file())
    assert not extra, f"in the wheel but not in the checkout: {extra}"


@pytest.mark.slow
def test_the_wheel_metadata_has_an_spdx_licence(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "License-Expression: MIT" in meta
    assert "unibind = unibind.retrieval.cli.main:main" in entry


def test_the_installed_package_imports_from_any_folder(tmp_path: Path) -> None:
    """From a folder that is not the checkout, ``unibind.*`` imports and the bare folder names do not."""
    code = (
        "import importlib.util, unibind.retrieval.cli.main, unibind.retrieval.service.app, unibind.schema.models;"
        "from pathlib import Path;"
        "bare = [n for n in ('schema', 'indexer', 'retrieval', 'migrations') if (s := importlib.util.find_spec(n))"
        f" and s.origin and Path(s.origin).resolve().is_relative_to({str(ROOT)!r})];"
        "print('bare:', bare)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "bare: []"
    proc = subprocess.run([str(Path(sys.executable).with_name("unibind")), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: unibind" in proc.stdout, proc.stderr
