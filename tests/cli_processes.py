"""`tickerflow run` as a separate process, as a user starts it: its environment, start and finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tickerflow.runtime import environment

RUN_TIMEOUT_S = 300
TICKERFLOW = Path(sys.executable).with_name("tickerflow")


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    (home / "prefect").mkdir(parents=True, exist_ok=True)  # the ephemeral API fails without it
    env.update(
        TICKERFLOW_HOME=str(home),
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )
    return dict(environment.apply(env))


def tickerflow(args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    """`python -m tickerflow ARGS` to its end: the interpreter of this venv, whatever the console script's
    first line says."""
    return subprocess.run(
        [sys.executable, "-m", "tickerflow", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def heavy_imports(argv: list[str], code: int) -> tuple[list[str], str]:
    """(which of Prefect, MLflow, torch, pandas and numpy `main(argv)` imported, its stderr), in a fresh
    interpreter; asserts that `main` returned `code`."""
    script = (
        f"import json, sys\nfrom tickerflow.cli import main\nassert main({argv!r}) == {code}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'prefect', 'mlflow', 'torch', 'pandas', 'numpy'})))"
    )
    env = environment.apply(dict(os.environ))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    # Its own session, so SIGKILL reaches the ephemeral Prefect server it starts as well.
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, log: Path) -> str:
    try:
        proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    out = log.read_text(errors="replace")
    assert proc.returncode == 0, out[-3000:]
    return out


def summary_of(out: str) -> dict:
    """The --json summary line (log lines from stderr may follow it in the merged output)."""
    return json.loads([line for line in out.splitlines() if line.startswith('{"mlflow_run_id"')][-1])
