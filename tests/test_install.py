"""The package as a cluster image gets it: built into a wheel (no source tree), and on Python 3.10."""

import glob
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"demo", "synth_cub", "cub_full", "awa1_full", "awa2_full", "sun_full"}


def test_a_wheel_ships_the_studies(tmp_path):
    """`pip install .` (a Dockerfile, a cluster image) installs no studies/ folder beside the
    package: the wheel carries the shipped study files, and `--study cub_full` finds its file."""
    source = tmp_path / "source"  # a build writes build/ and *.egg-info beside the sources: not in the repo
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "results", "reports", "build", "*.egg-info", "__pycache__", "benchmarks", "docs"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("gzsl-*.whl"))
    # pyproject.toml lists the packages (the studies/ folder is mapped into gzsl/studyfile/shipped/):
    # a package left off that list would be missing from every install but an editable one.
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "gzsl").rglob("*.py")}
    assert modules <= set(zipfile.ZipFile(wheel).namelist()), modules - set(zipfile.ZipFile(wheel).namelist())
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import gzsl, sys; from gzsl.studyfile import load_study, shipped_studies; "
            "print(gzsl.__file__); print(sorted(shipped_studies())); "
            "s = load_study('cub_full'); print(s.dataset, s.epochs, s.grace_period)")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    where, names, cub = run.stdout.splitlines()
    assert where.startswith(str(site))  # the wheel's copy, not the source tree
    assert set(eval(names)) == SHIPPED
    assert cub == "CUB 100 10"  # the lowest candidate rung: 10% of the run (gzsl.selection.lowest_rung)


def _python310() -> str | None:
    """A working python3.10: on PATH (not a pyenv shim that refuses), or pyenv's own copy."""
    for found in [shutil.which("python3.10"), *sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.10*/bin/python3.10")))]:
        if found and subprocess.run([found, "--version"], capture_output=True).returncode == 0:
            return found
    return None


def test_study_files_load_on_python_310(tmp_path):
    """Ubuntu 22.04 images ship Python 3.10, which has no tomllib: gzsl falls back to tomli there.
    Every module must also compile under 3.10's grammar."""
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter here (python3.10 or pyenv's); README lists the tested versions")
    site = tmp_path / "site"
    get = subprocess.run([python, "-m", "pip", "install", "-q", "--target", str(site), "tomli>=1.1"],
                         capture_output=True, text=True, timeout=180)
    if get.returncode != 0:
        pytest.skip(f"could not install tomli for Python 3.10: {get.stderr.strip().splitlines()[-1:]}")
    code = ("import pathlib, sys; assert sys.version_info[:2] == (3, 10); "
            "[compile(p.read_text(), str(p), 'exec') for p in pathlib.Path('gzsl').rglob('*.py')]; "
            "from gzsl.studyfile import load_study, shipped_studies, tomllib; print(tomllib.__name__); "
            "print(sorted(n for n in shipped_studies() if load_study(n)))")
    run = subprocess.run([python, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": f"{site}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    parser, names = run.stdout.splitlines()
    assert parser == "tomli" and set(eval(names)) == SHIPPED
