"""How tickerflow starts a team's servers: the MLflow server's command and environment, the PostgreSQL
databases behind them, and the one line the suite prints where PostgreSQL is absent."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tickerflow.runtime.deployments import ROOT
from tickerflow.runtime.postgres import PostgresAddress, unique_names
from tickerflow.runtime.servers import MLFLOW_JOB_EXECUTION, mlflow_server


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_server_proxies_artifacts_and_leaves_its_job_runner_off(monkeypatch, tmp_path):
    monkeypatch.delenv(MLFLOW_JOB_EXECUTION, raising=False)
    store = "postgresql+psycopg2://postgres@127.0.0.1:5432/tf_mlflow"
    server = mlflow_server("127.0.0.1", 5123, store, tmp_path / "art", tmp_path)
    command = server.command
    assert command[command.index("--backend-store-uri") + 1] == store
    assert Path(command[command.index("--artifacts-destination") + 1]) == tmp_path / "art"
    assert server.env == {MLFLOW_JOB_EXECUTION: "false"}


def test_a_user_who_turns_the_job_runner_on_keeps_it(monkeypatch, tmp_path):
    monkeypatch.setenv(MLFLOW_JOB_EXECUTION, "true")
    assert mlflow_server("127.0.0.1", 5123, "sqlite:///x.db", tmp_path, tmp_path).env == {}


def test_postgres_address_parses_and_builds_the_driver_urls():
    address = PostgresAddress.parse("postgresql://bob:pw@db.example:5433")
    assert address.where == "db.example:5433"
    assert address.mlflow_store_uri("m") == "postgresql+psycopg2://bob:pw@db.example:5433/m"
    assert address.prefect_database_url("p") == "postgresql+asyncpg://bob:pw@db.example:5433/p"
    with pytest.raises(ValueError, match="postgresql://"):
        PostgresAddress.parse("mysql://x@y")
    mlflow_db, prefect_db = unique_names()
    assert mlflow_db.endswith("_mlflow") and prefect_db.endswith("_prefect") and str(os.getpid()) in mlflow_db
    assert mlflow_db != unique_names()[0]


def test_a_postgres_that_does_not_answer_is_named_with_the_reason():
    problem = PostgresAddress(port=closed_port()).problem()
    assert problem is not None and problem.strip()


def test_without_postgres_the_suite_says_so_in_one_line_and_skips_the_postgres_runs(tmp_path):
    """The PostgreSQL runs of the integration tests are skipped with one reason, folded into one summary line;
    the run passes. (Collecting and skipping starts no server.)"""
    port = closed_port()
    env = {**os.environ, "TICKERFLOW_TEST_POSTGRES": f"postgresql://postgres@127.0.0.1:{port}"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "tests/integration/test_team_servers.py",
            "-k",
            "postgresql or two_runs",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = f"PostgreSQL not reachable on 127.0.0.1:{port}: integration tests run on SQLite only"
    said = [text for text in proc.stdout.splitlines() if line in text]
    assert len(said) == 1 and said[0].startswith("SKIPPED [2]"), proc.stdout[-3000:]
    assert "2 skipped" in proc.stdout and "passed" not in proc.stdout
