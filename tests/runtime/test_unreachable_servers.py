"""A command pointed at a server that is down ends at once with one line naming the server and the setting."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from cli_processes import cli_env, tickerflow

from tickerflow.runtime import environment, reachability
from tickerflow.runtime.deployments import ROOT

SAMPLE = ROOT / "data" / "sample" / "stocks_daily_2000_2013.csv.gz"
# The limit for a command against a server that is down; the commands take seconds (their imports)
LIMIT_SECONDS = 60


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMMANDS = {
    "run": ["run", "--data", str(SAMPLE), "--epochs", "1"],
    "forecast": ["forecast", "--data", str(SAMPLE), "--out", "f.parquet"],
    "models": ["models"],
    "promote": ["promote", "--version", "1"],
    "gc": ["gc"],
}


def stderr_of_a_command_against(setting: str, url: str, command: str, tmp_path) -> list[str]:
    """`tickerflow <command>` with `setting` pointing at `url`, where nothing listens: it exits 1 within
    LIMIT_SECONDS, with no traceback; its stderr's lines."""
    env = {**cli_env(tmp_path / "home"), setting: url}
    started = time.monotonic()
    proc = tickerflow(COMMANDS[command], env, tmp_path)
    elapsed = time.monotonic() - started

    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert elapsed < LIMIT_SECONDS
    return proc.stderr.strip().splitlines()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_names_an_mlflow_server_that_is_down_in_one_line(command, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}"
    assert stderr_of_a_command_against("MLFLOW_TRACKING_URI", url, command, tmp_path) == [
        f"tickerflow {command}: the MLflow tracking server at {url} is not reachable (MLFLOW_TRACKING_URI); "
        "start it or point MLFLOW_TRACKING_URI elsewhere"
    ]


@pytest.mark.parametrize("command", ["run", "forecast", "gc"])
def test_the_commands_that_use_prefect_name_a_prefect_api_that_is_down_in_one_line(command, tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/api"
    assert stderr_of_a_command_against("PREFECT_API_URL", url, command, tmp_path) == [
        f"tickerflow {command}: the Prefect API at {url} is not reachable (PREFECT_API_URL); "
        "start it or point PREFECT_API_URL elsewhere"
    ]


def test_a_prefect_api_set_in_the_active_profile_is_probed_too(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/api"
    env = cli_env(tmp_path / "home")
    profiles = tmp_path / "home" / "prefect" / "profiles.toml"
    profiles.write_text(f'active = "team"\n\n[profiles.team]\nPREFECT_API_URL = "{url}"\n')
    proc = tickerflow(COMMANDS["gc"], env, tmp_path)

    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"tickerflow gc: the Prefect API at {url} is not reachable (PREFECT_API_URL); "
        "start it or point PREFECT_API_URL elsewhere"
    ]


def test_credentials_in_a_tracking_uri_stay_out_of_the_line():
    with pytest.raises(reachability.ServerUnreachable) as caught:
        reachability.check_mlflow({"MLFLOW_TRACKING_URI": f"http://alice:s3cret@127.0.0.1:{closed_port()}/?t=x"})
    assert "s3cret" not in str(caught.value) and "127.0.0.1" in str(caught.value)


def test_a_local_store_and_an_unset_prefect_api_are_not_probed():
    reachability.check_mlflow({"MLFLOW_TRACKING_URI": "sqlite:////nowhere/mlflow.db"})
    reachability.check_mlflow({})
    reachability.check_prefect(None)


def test_a_server_that_answers_anything_is_reachable(tmp_path):
    """Any HTTP status counts: a proxy in front of the server may answer the health path with 401 or 404."""
    port = closed_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not reachability.answers(f"http://127.0.0.1:{port}/") and time.monotonic() < deadline:
            time.sleep(0.2)  # polling for the server's real start, bounded by the deadline
        reachability.check_mlflow({"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})  # /health: a 404
        reachability.check_prefect(f"http://127.0.0.1:{port}/api")
    finally:
        server.terminate()
        server.wait()


def test_environment_bounds_mlflow_retries_unless_the_user_set_them():
    env = environment.apply({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "9"})
    assert env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    assert int(env["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 60
    assert env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"  # MLflow reads DO_NOT_TRACK=1 as "not true"
    assert int(environment.apply({})["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) < 7  # MLflow's own default
