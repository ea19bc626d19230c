"""The long-running commands against real servers: `tickerflow serve` fires a scheduled run;
without PREFECT_API_URL it starts its own server; `tickerflow ui` serves both UIs and stops on Ctrl-C, and on
a hangup with every process of its servers; while it runs, its ports are refused to a second `ui` and to `serve`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import psutil
import pytest

from integration.support import TERMINAL, free_port, run_cli
from tickerflow.runtime import environment
from tickerflow.runtime.deployments import ROOT
from tickerflow.runtime.servers import http_ok

pytestmark = pytest.mark.integration


def start_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """The command as a terminal starts it: its own process group, and SIGINT at its default action.
    A background job of a non-interactive shell (how a CI script may start the suite) ignores SIGINT, and
    an ignored signal stays ignored across exec: the command would never see the Ctrl-C sent below."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tickerflow", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_sigint_default,
        )


def _sigint_default() -> None:  # in the child, between fork and exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(proc: subprocess.Popen, seconds: float = 90) -> int:
    """Ctrl-C as a terminal sends it (to the process group); SIGKILL only if it does not stop in time."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    return proc.returncode


def wait_for(condition, seconds: float, what: str, log: Path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)  # polling a real condition, bounded by the deadline
    pytest.fail(f"timed out after {seconds:.0f}s waiting for {what}; log:\n{log.read_text(errors='replace')[-4000:]}")


def test_serve_fires_a_scheduled_run_against_the_server(prefect_api, child_env, slice_csv, tmp_path):
    env = {**child_env, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}  # the runner looks for due runs every 10 s by default
    params = {
        "config": {
            "ingest": {"source": str(slice_csv)},
            "train": {"epochs": 1, "batch_size": 256},
            "register": {"model_name": "served-gru"},
        }
    }
    log = tmp_path / "serve.log"
    proc = start_cli(["serve", "--only", "train-weekly", "--interval", "5", "--params", json.dumps(params)], env, log)
    try:

        def served_deployment():
            try:
                d = prefect_api.deployment("train_pipeline", "train-weekly")
            except httpx.HTTPStatusError:
                return None
            return d if any(s["schedule"].get("interval") == 5 for s in d["schedules"]) else None

        deployment = wait_for(served_deployment, 120, "serve to register train-weekly with a 5 s interval", log)

        def finished_scheduled_run():
            runs = [r for r in prefect_api.flow_runs_of(deployment["id"]) if r["auto_scheduled"]]
            return next((r for r in runs if r["state_type"] in TERMINAL), None)

        run = wait_for(finished_scheduled_run, 240, "a scheduled run to finish", log)
        assert run["state_type"] == "COMPLETED", f"{run['state']['message']}\n{log.read_text(errors='replace')[-6000:]}"
        assert run["parameters"]["config"]["train"]["epochs"] == 1
        assert run["name"].startswith("train-small-served-gru-")
    finally:
        code = interrupt(proc)
    assert code == 0, log.read_text(errors="replace")[-3000:]


def test_serve_without_api_url_starts_a_local_server_and_stops_it(tmp_path, migrated_prefect_db):
    port = free_port()
    (tmp_path / "prefect").mkdir()
    shutil.copy(migrated_prefect_db, tmp_path / "prefect" / "prefect.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), TICKERFLOW_HOME=str(tmp_path / "home"))
    environment.apply(env)
    log = tmp_path / "serve.log"
    proc = start_cli(["serve", "--only", "forecast-daily", "--prefect-port", str(port)], env, log)
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(lambda: "runs no scheduler" in log.read_text(errors="replace"), 60, "the explanation", log)
        wait_for(
            lambda: http_ok(f"{api}/deployments/name/batch_forecast/forecast-daily"),
            180,
            "forecast-daily to be served by the server serve started",
            log,
        )
        deployment = httpx.get(f"{api}/deployments/name/batch_forecast/forecast-daily", timeout=60).json()
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["30 17 * * 1-5"]
    finally:
        code = interrupt(proc)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert not http_ok(f"{api}/health")  # the server it started is gone too


def ui_home(tmp_path: Path, migrated_mlflow_db: Path, migrated_prefect_db: Path) -> dict[str, str]:
    """A home with a migrated MLflow store and Prefect database, and the environment `ui` runs in over it."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "prefect").mkdir()
    shutil.copy(migrated_prefect_db, tmp_path / "prefect" / "prefect.db")
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), TICKERFLOW_HOME=str(home))
    return dict(environment.apply(env))


def test_ui_serves_both_stores_and_stops_cleanly_on_ctrl_c(tmp_path, migrated_mlflow_db, migrated_prefect_db):
    env = ui_home(tmp_path, migrated_mlflow_db, migrated_prefect_db)
    home = Path(env["TICKERFLOW_HOME"])
    # an earlier embedded run's experiment must show up in the UI's MLflow server
    mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}").create_experiment("earlier-runs")
    prefect_port, mlflow_port = free_port(), free_port()
    log = tmp_path / "ui.log"
    proc = start_cli(["ui", "--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)], env, log)
    prefect_url, mlflow_url = f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}"
    try:
        wait_for(lambda: f"MLflow UI:  {mlflow_url}" in log.read_text(errors="replace"), 180, "both URLs", log)
        assert f"Prefect UI: {prefect_url}" in log.read_text()
        assert http_ok(f"{prefect_url}/api/health", timeout=30) and http_ok(f"{mlflow_url}/health", timeout=30)
        assert "<html" in httpx.get(prefect_url, timeout=60).text.lower()
        found = httpx.get(
            f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": "earlier-runs"},
            timeout=60,
        )
        assert found.status_code == 200, found.text
        assert (home / "mlartifacts").is_dir()
    finally:
        code = interrupt(proc)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert "stopping Prefect server, MLflow server (SIGINT)" in log.read_text()
    assert not http_ok(f"{prefect_url}/api/health") and not http_ok(f"{mlflow_url}/health")


def test_a_hangup_stops_ui_and_every_server_process_and_its_ports_are_refused_meanwhile(
    tmp_path, migrated_mlflow_db, migrated_prefect_db
):
    """The terminal closes: its kernel and its shell each send `ui` a SIGHUP. The servers run in process groups
    of their own, which no signal of the terminal reaches: `ui` must stop them, and all their workers."""
    env = ui_home(tmp_path, migrated_mlflow_db, migrated_prefect_db)
    prefect_port, mlflow_port = free_port(), free_port()
    log = tmp_path / "ui.log"
    proc = start_cli(["ui", "--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)], env, log)
    processes = [psutil.Process(proc.pid)]
    try:
        wait_for(lambda: "MLflow UI:" in log.read_text(errors="replace"), 180, "both URLs", log)
        processes += psutil.Process(proc.pid).children(recursive=True)
        assert len(processes) >= 3, [p.cmdline() for p in processes]  # ui, each server and its workers

        ports = ["--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)]
        second = run_cli(["tickerflow", "ui", *ports], env, timeout=120)
        assert (second.returncode, second.stdout) == (2, "")
        assert second.stderr.splitlines() == [
            f"tickerflow ui: ports {prefect_port} and {mlflow_port} on 127.0.0.1 are in use: choose others with "
            "--prefect-port N and --mlflow-port N (nothing was started)"
        ]
        served = run_cli(["tickerflow", "serve", "--prefect-port", str(prefect_port)], env, timeout=180)
        assert (served.returncode, served.stdout) == (2, "")  # never "Starting a local Prefect server"
        (line,) = served.stderr.splitlines()
        assert line.startswith(f"tickerflow serve: port {prefect_port} on 127.0.0.1 is in use by a Prefect server")
        assert f"export PREFECT_API_URL=http://127.0.0.1:{prefect_port}/api" in line and "--prefect-port" in line

        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(90) == 0, log.read_text(errors="replace")[-3000:]
        _, alive = psutil.wait_procs(processes, timeout=60)
        assert alive == [], f"left behind: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        for leftover in processes:  # whatever a failure above left running
            with contextlib.suppress(psutil.Error):
                leftover.kill()
    assert "tickerflow ui: stopping Prefect server, MLflow server (SIGHUP)" in log.read_text()
