"""`make run` installs the runtime only, `make test` the dev tools too; both from constraints.txt (dry runs of make)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(target: str, venv: Path) -> list[str]:
    """The commands `make TARGET` would run for a venv that does not exist yet (make -n runs nothing)."""
    out = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def installs(commands: list[str]) -> list[str]:
    return [c for c in commands if " pip install " in c and "--upgrade pip" not in c]


def test_make_run_installs_without_the_dev_dependencies_and_from_the_constraints(tmp_path):
    (install,) = installs(planned("run", tmp_path / "venv"))
    assert "-c constraints.txt" in install and install.rstrip().endswith("-e .")
    assert "dev" not in install


def test_make_test_installs_the_dev_dependencies_and_lints_before_pytest(tmp_path):
    commands = planned("test", tmp_path / "venv")
    (install,) = installs(commands)
    assert "-c constraints.txt" in install and "'.[dev]'" in install
    steps = [next(i for i, c in enumerate(commands) if tool in c) for tool in ("ruff check", "-m mypy", "-m pytest")]
    assert steps == sorted(steps)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_constraints_pin_every_dependency_and_torch_stays_2_13_0():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["dev"]
    for own in [r for r in wanted if _name(r) == project["name"]]:  # `tickerflow[postgres]`: that extra's
        wanted.remove(own)
        wanted += [r for extra in own.partition("[")[2].rstrip("]").split(",") for r in extras[extra.strip()]]
    assert "psycopg2-binary>=2.9,<3" in wanted
    assert [r for r in wanted if _name(r) not in pins] == []
    assert pins["torch"] == "2.13.0" and pins["arch"] == "8.0.0" and pins["exchange-calendars"].startswith("4.13")


def test_the_project_metadata_gives_setuptools_nothing_to_deprecate():
    """Every install builds the project's metadata; a deprecated field (`license = { text = ... }`) printed
    setuptools' deprecation three times per install. (A real `pip install -e .` prints none: see the commit.)"""
    import warnings

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    said = [f"{w.category.__name__}: {w.message}" for w in caught]
    assert [s for s in said if "deprecat" in s.lower()] == [], said
    assert dist.metadata.license_expression == "Apache-2.0"
    # the SPDX string needs setuptools 77; the build environment must not pick an older one
    (setuptools,) = [r for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]]
    assert setuptools == "setuptools>=77"
