"""Installed as one namespace (`tickerflow.flows`, `tickerflow.tasks`): a working folder with its own
`tasks.py`, `flows/` and `tasks/` (as a Prefect or Django project has) changes nothing, even though
`python -m` and `python -c` put that folder first on `sys.path`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tickerflow.runtime import environment

# Each decoy records that it was imported, then fails the import.
DECOYS = ("tasks.py", "flows/__init__.py", "flows/train_pipeline.py", "tasks/__init__.py", "tasks/ingest.py")


@pytest.fixture
def project(tmp_path) -> tuple[Path, Path]:
    """(a working folder full of decoys, the file a decoy writes when imported)."""
    work, imported = tmp_path / "project", tmp_path / "decoys-imported.txt"
    for name in DECOYS:
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"open({str(imported)!r}, 'a').write({name!r} + '\\n')\nraise ImportError('decoy {name}')\n")
    return work, imported


def run_in(work: Path, args: list[str], tmp_path: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_")) and k != "PYTHONPATH"}
    env.update(TICKERFLOW_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect"))
    return subprocess.run(
        [sys.executable, *args], cwd=work, env=environment.apply(env), capture_output=True, text=True, timeout=timeout
    )


def test_the_cli_and_the_flows_import_beside_a_project_with_the_same_names(project, tmp_path):
    work, imported = project
    help_run = run_in(work, ["-m", "tickerflow", "--help"], tmp_path, timeout=600)
    assert help_run.returncode == 0, help_run.stderr[-3000:]
    assert "run" in help_run.stdout and "forecast" in help_run.stdout
    check = "import sys, tickerflow.flows.train_pipeline, tickerflow.tasks.ingest; assert not {'flows', 'tasks'} & set(sys.modules)"
    flows_run = run_in(work, ["-c", check], tmp_path, timeout=600)
    assert flows_run.returncode == 0, flows_run.stderr[-3000:]
    assert not imported.exists(), imported.read_text()


@pytest.mark.slow
def test_a_training_run_beside_a_project_with_the_same_names(project, small_sample_csv, tmp_path):
    work, imported = project
    (tmp_path / "prefect").mkdir()
    run = run_in(
        work, ["-m", "tickerflow", "run", "--data", str(small_sample_csv), "--epochs", "1"], tmp_path, timeout=900
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert "MLflow run:" in run.stdout
    assert not imported.exists(), imported.read_text()
