"""The README's examples work as written: its Python snippet runs, its forecast command reads a file that exists."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def snippet(section: str) -> str:
    """The first ```python block after the heading `section`."""
    return re.search(r"```python\n(.*?)```", README[README.index(section) :], re.S).group(1)


def test_the_python_snippet_runs_as_written_and_leaves_no_mlflow_db_behind(champion, tmp_path):
    assert not (ROOT / "mlflow.db").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env["TICKERFLOW_HOME"] = str(champion.home)  # where `tickerflow run` would have registered the champion
    done = subprocess.run(
        [sys.executable, "-c", snippet("## Using the registered model")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "horizon" in done.stdout and "q95" in done.stdout and "AAPL" in done.stdout  # the forecast frame, printed
    assert "Found extra inputs" not in done.stderr, done.stderr[-3000:]  # it passes only the columns the model reads
    assert not (ROOT / "mlflow.db").exists()  # the snippet read the home's store, not ./mlflow.db


def test_the_forecast_example_reads_a_file_that_exists():
    commands = [line for line in README.splitlines() if line.startswith("tickerflow forecast --data")]
    assert commands
    for command in commands:
        words = shlex.split(command)
        data = words[words.index("--data") + 1]
        if data.isupper() or "PATH" in data:  # a placeholder in the command reference
            continue
        assert (ROOT / data).is_file(), command
