"""A real `tickerflow run` stopped by a signal: SIGTERM, SIGINT or SIGHUP to its process group (as `timeout`
sends it), SIGTERM to the main process alone (during register), SIGKILL of the main process.

What must hold after each: one line on the console and no traceback; the MLflow run KILLED with the
reason, never RUNNING; the Prefect flow run Cancelled with the reason; the registry consistent (each
version has its alias and its history entry); and no process of the run left behind, the temporary
Prefect API included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import mlflow
import psutil
import pytest
from cli_processes import RUN_TIMEOUT_S, TICKERFLOW, cli_env, start

from tickerflow.tracking.registry import champion_history
from tickerflow.tracking.store import EXPERIMENT

pytestmark = pytest.mark.slow

DEADLINE_S = 240  # Prefect start-up, ingest, validation, windowing on a busy box
EXIT_S = 60  # "within seconds": the bound of the wait, not an expected duration


def poll(condition, proc: subprocess.Popen, log: Path, what: str):
    """Poll `condition()` (bounded) until it returns something truthy; fail if the run ends first."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"run ended (rc={proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)  # polling interval of an observation loop, not a synchronisation guess
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"no {what} within {DEADLINE_S}s:\n{log.read_text()[-3000:]}")


def temporary_api(pid: int) -> psutil.Process | None:
    """The command's temporary Prefect API, once it serves (a child of the command)."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            if any(part.endswith(":create_app") for part in child.cmdline()):  # uvicorn --factory ...:create_app
                return child
    return None


def everything_of(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return []


def assert_all_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=EXIT_S)
    for proc in alive:
        proc.kill()
    assert alive == [], f"left behind: {[(p.pid, p.cmdline()) for p in alive]}"


def setup_run(tmp_path: Path, migrated_mlflow_db: Path, epochs: int) -> tuple[Path, dict, list[str]]:
    home = tmp_path / "home"
    env = cli_env(home)
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"train": {"epochs": epochs, "patience": epochs + 1}}))
    return home, env, ["--config", str(config)]


def one_stop_line(log: Path, rc: int, sig: signal.Signals = signal.SIGTERM) -> None:
    out = log.read_text(errors="replace")
    assert "Traceback" not in out, out[-3000:]
    said = [line for line in out.splitlines() if line.startswith("tickerflow run: ")]
    verb = "interrupted" if sig == signal.SIGINT else "stopped"
    assert said == [f"tickerflow run: {verb} by {sig.name}"], out[-3000:]
    assert rc == 128 + sig


def assert_run_recorded_as_stopped(home: Path) -> None:
    """The training run (experiment tickerflow; a champion decision that completed is a finished run of
    tickerflow-registry) ended KILLED with the reason, and the flow run Cancelled."""
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"]
    assert runs[0].data.tags["tickerflow.killed_reason"].startswith("stopped by a signal: ")
    with contextlib.closing(sqlite3.connect(home / "prefect" / "prefect.db")) as db:
        states = db.execute("select state_type, state_name from flow_run").fetchall()
        (message,) = db.execute("select message from flow_run_state where type = 'CANCELLED'").fetchone()
    assert states == [("CANCELLED", "Cancelled")]
    assert message.startswith("stopped by a signal")


def assert_registry_consistent(home: Path) -> list:
    """Each version has the challenger alias (the run's own) or is the champion, and a history entry."""
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}", f"sqlite:///{home / 'mlflow.db'}")
    versions = [client.get_model_version(v.name, v.version) for v in client.search_model_versions()]
    for version in versions:
        with pytest.MonkeyPatch.context() as mp:  # the run's home, not this test's
            mp.setenv("TICKERFLOW_HOME", str(home))
            history = champion_history(version.name)  # the decisions, runs of tickerflow-registry
        assert version.aliases, f"v{version.version} has no alias"
        assert any(e["version"] == str(version.version) for e in history), f"v{version.version} is not in the history"
    return versions


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_to_the_group_mid_training_stops_in_order(sig, tmp_path, migrated_mlflow_db, small_sample_csv):
    """`timeout` forwards a signal it receives to its command's whole group, as it sends its own on expiry
    (SIGINT: Ctrl-C in a terminal reaches the whole foreground group the same way; SIGHUP: the terminal closed)."""
    home, env, config = setup_run(tmp_path, migrated_mlflow_db, epochs=50)
    log = tmp_path / "run.log"
    timeout = start(
        ["timeout", "-s", "TERM", str(RUN_TIMEOUT_S), str(TICKERFLOW), "run", "--data", str(small_sample_csv), *config],
        env,
        log,
    )
    poll(lambda: list((home / "checkpoints").glob("*/checkpoint.pt")), timeout, log, "a checkpoint")
    processes = everything_of(timeout.pid)
    assert temporary_api(timeout.pid) is not None
    timeout.send_signal(sig)
    timeout.wait(timeout=EXIT_S)
    one_stop_line(log, timeout.returncode, sig)
    assert_all_gone(processes)
    assert_run_recorded_as_stopped(home)
    assert assert_registry_consistent(home) == []


def test_sigterm_to_the_main_process_during_register_leaves_a_complete_registry(
    tmp_path, migrated_mlflow_db, small_sample_csv
):
    home, env, config = setup_run(tmp_path, migrated_mlflow_db, epochs=1)
    log = tmp_path / "run.log"
    proc = start([str(TICKERFLOW), "run", "--data", str(small_sample_csv), *config], env, log)

    def registering() -> bool:
        with (
            contextlib.suppress(sqlite3.Error),
            contextlib.closing(sqlite3.connect(home / "mlflow.db", timeout=1)) as db,
        ):
            return bool(db.execute("select count(*) from model_versions").fetchone()[0])
        return False

    poll(registering, proc, log, "a model version")
    processes = everything_of(proc.pid)
    proc.send_signal(signal.SIGTERM)  # the main pid only
    proc.wait(timeout=EXIT_S)
    out = log.read_text(errors="replace")
    assert "Traceback" not in out, out[-3000:]
    said = [line for line in out.splitlines() if line.startswith("tickerflow run: ")]
    assert len(said) <= 1, out[-3000:]
    if proc.returncode != 0:  # the signal landed inside register: it was held until the registry was whole
        one_stop_line(log, proc.returncode)
        assert_run_recorded_as_stopped(home)
    assert_all_gone(processes)
    versions = assert_registry_consistent(home)
    assert versions, "the run was stopped after its version was created, so the version must be complete"


def test_sigkill_of_the_main_process_takes_the_temporary_api_with_it(tmp_path, migrated_mlflow_db, small_sample_csv):
    home, env, config = setup_run(tmp_path, migrated_mlflow_db, epochs=50)
    log = tmp_path / "run.log"
    proc = start([str(TICKERFLOW), "run", "--data", str(small_sample_csv), *config], env, log)
    server = poll(lambda: temporary_api(proc.pid), proc, log, "the temporary API")
    proc.kill()  # the main pid only: its group (the run's other processes) is not signalled
    proc.wait(timeout=EXIT_S)
    assert server.ppid() != proc.pid or not server.is_running()
    assert_all_gone([server])
