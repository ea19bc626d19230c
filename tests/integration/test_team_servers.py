"""`tickerflow` commands on a team's servers, as each machine of the team runs them: its own TICKERFLOW_HOME,
PREFECT_API_URL and MLFLOW_TRACKING_URI pointing at a shared Prefect server and MLflow tracking server (proxied
artifacts), on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pytest
from cli_processes import RUN_TIMEOUT_S, tickerflow

from tickerflow_model.names import CHAMPION_ALIAS

pytestmark = pytest.mark.integration

# What MLflow prints to stdout at the end of a run against a tracking server, unless told not to
# (MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT): "🏃 View run <name> at: <url>", "🧪 View experiment at: <url>".
MLFLOW_STDOUT_MARKS = ("View run", "View experiment", "🏃", "🧪")


@pytest.fixture(scope="module")
def permissive_config(tmp_path_factory):
    """A 1-epoch model on 500 days may lose to "tomorrow = today"; the gate would (rightly) refuse it, and
    these tests are about the servers: any version may become champion."""
    path = tmp_path_factory.mktemp("config") / "permissive.json"
    path.write_text(json.dumps({"register": {"min_skill": -1.0}, "train": {"batch_size": 256}}))
    return path


def train_args(slice_csv, config, model: str) -> list[str]:
    return ["run", "--data", str(slice_csv), "--epochs", "1", "--model", model, "--config", str(config), "--json"]


def mlflow_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if any(mark in line for mark in MLFLOW_STDOUT_MARKS)]


def test_run_forecast_and_models_through_the_team_servers(team_servers, slice_csv, permissive_config, tmp_path):
    model = f"team-{team_servers.backend}"
    env = team_servers.env(tmp_path / "home")

    run = tickerflow(train_args(slice_csv, permissive_config, model), env, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert mlflow_lines(run.stdout) == []  # stdout: the table and the JSON, no MLflow links of its own
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    champion = summary["champion_version"]  # the GRU's version, or a baseline's if it scored better
    assert champion is not None, summary["reason"]
    assert summary["mlflow_run_url"].startswith(f"{team_servers.mlflow.url}/#/experiments/")

    # the run's artifacts went through the server (proxied), not into a folder of this machine
    client = mlflow.MlflowClient(team_servers.mlflow.url, registry_uri=team_servers.mlflow.url)
    mlflow_run = client.get_run(summary["mlflow_run_id"])
    assert mlflow_run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert {"evaluation", "validation"} <= {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
    assert client.get_model_version_by_alias(model, CHAMPION_ALIAS).version == champion
    assert not list((tmp_path / "home").rglob("mlflow.db"))  # no local store beside the server's

    out = tmp_path / "forecasts.parquet"
    forecast = tickerflow(
        ["forecast", "--data", str(slice_csv), "--out", str(out), "--model", model, "--json"], env, tmp_path
    )
    assert forecast.returncode == 0, forecast.stderr[-3000:]
    assert mlflow_lines(forecast.stdout) == []
    lines = forecast.stdout.strip().splitlines()
    assert lines[0].startswith("wrote ") and json.loads(lines[-1])["written"]["model_version"] == champion
    assert out.exists()

    listing = tickerflow(["models", "--model", model, "--json"], env, tmp_path)
    assert listing.returncode == 0, listing.stderr[-3000:]
    versions = json.loads(listing.stdout)["versions"]
    assert summary["model_version"] in {v["version"] for v in versions}
    assert [v["version"] for v in versions if CHAMPION_ALIAS in v["aliases"]] == [champion]


def test_two_runs_from_two_homes_at_once_both_finish(postgres_servers, slice_csv, permissive_config, tmp_path):
    """Two machines train the same model at the same moment against the PostgreSQL-backed servers: both
    runs finish, each registers its version, and the model ends with one champion."""
    model = "team-race"
    runs = []
    for machine in ("a", "b"):
        log = (tmp_path / f"{machine}.err").open("w")
        command = [sys.executable, "-m", "tickerflow", *train_args(slice_csv, permissive_config, model)]
        env = postgres_servers.env(tmp_path / machine)
        runs.append(
            (subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=log, text=True), log)
        )
    outcomes = []
    for process, log in runs:
        stdout, _ = process.communicate(timeout=RUN_TIMEOUT_S)
        log.close()
        outcomes.append((process.returncode, stdout, open(log.name).read()))

    for code, _stdout, stderr in outcomes:
        assert code == 0, stderr[-3000:]
        assert "Traceback" not in stderr and "UniqueViolation" not in stderr, stderr[-3000:]
    summaries = [json.loads(stdout.strip().splitlines()[-1]) for _, stdout, _ in outcomes]
    client = mlflow.MlflowClient(postgres_servers.mlflow.url, registry_uri=postgres_servers.mlflow.url)
    registered = {v.version for v in client.search_model_versions(f"name='{model}'")}
    mine = {s["model_version"] for s in summaries}
    assert len(mine) == 2 and mine <= registered  # each run registered a version of its own
    champion = client.get_model_version_by_alias(model, CHAMPION_ALIAS).version
    assert champion in registered and champion in {s["champion_version"] for s in summaries}
