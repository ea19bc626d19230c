"""Real servers on loopback for the integration tests: one Prefect server and one MLflow tracking server
per session, started as subprocesses on free ports and stopped even when a test fails.

These tests talk to their own servers through explicit URLs (child-process environments, httpx, an
MlflowClient with a URI), never through the in-process `prefect_harness` the other tests use.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from integration.support import PrefectAPI, free_port
from tickerflow.runtime import environment
from tickerflow.runtime.deployments import ROOT
from tickerflow.runtime.servers import Server, mlflow_server, prefect_server
from tickerflow_model.config import LOOPBACK


def pytest_collection_modifyitems(items) -> None:
    """Under pytest-xdist (`make test`), every test here runs on one worker: they share the session's servers,
    which a second worker would start again."""
    for item in items:
        if "integration" in item.nodeid.split("::")[0].split("/"):
            item.add_marker(pytest.mark.xdist_group("servers"))


SERVER_START_SECONDS = 150.0  # cold start with migrations on 2 busy cores
STOP_SECONDS = 5.0  # after the tests, a server's graceful shutdown is not what is under test


def _start_all(*servers: Server) -> None:
    """Start the servers side by side (each takes ~10 s), then wait for each; stop them all on failure."""
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_healthy(SERVER_START_SECONDS)
    except BaseException:
        _stop_all(*servers)
        raise


def _stop_all(*servers: Server) -> None:
    for server in servers:
        server.stop(timeout=STOP_SECONDS)


@pytest.fixture(scope="session")
def prefect_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture(scope="session")
def server_pair(tmp_path_factory, prefect_home, migrated_mlflow_db):
    """`prefect server start` (SQLite in a temporary PREFECT_HOME) and `mlflow server` (SQLite backend,
    pre-migrated copy; local artifact root), each on a free loopback port."""
    env = {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": None,
        "PREFECT_UI_API_URL": None,
        # a short scheduler loop so an interval schedule of a few seconds is honoured in a test
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }
    prefect = prefect_server(LOOPBACK, free_port(), tmp_path_factory.mktemp("prefect-logs"), env=env)
    base = tmp_path_factory.mktemp("mlflow-server")
    shutil.copy(migrated_mlflow_db, base / "mlflow.db")
    mlflow = mlflow_server(LOOPBACK, free_port(), f"sqlite:///{base / 'mlflow.db'}", base / "artifacts", base)
    _start_all(prefect, mlflow)
    try:
        yield prefect, mlflow
    finally:
        _stop_all(prefect, mlflow)


@pytest.fixture(scope="session")
def prefect_srv(server_pair) -> Server:
    return server_pair[0]


@pytest.fixture(scope="session")
def mlflow_srv(server_pair) -> Server:
    return server_pair[1]


@pytest.fixture(scope="session")
def migrated_prefect_db(prefect_srv, prefect_home, tmp_path_factory) -> Path:
    """A consistent copy of the session server's migrated database: a fresh server on it skips ~6 s of
    migrations. (SQLite's backup API copies a live database safely.)"""
    target = tmp_path_factory.mktemp("prefect-template") / "prefect.db"
    source = sqlite3.connect(prefect_home / "prefect.db")
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    return target


@pytest.fixture(scope="session")
def prefect_api(prefect_srv) -> PrefectAPI:
    return PrefectAPI(f"{prefect_srv.url}/api")


@pytest.fixture(scope="session")
def ops_home(tmp_path_factory) -> Path:
    """TICKERFLOW_HOME of the flow runs that workers and `serve` start (snapshots, windows, checkpoints)."""
    return tmp_path_factory.mktemp("ops-home")


@pytest.fixture(scope="session")
def child_env(prefect_srv, mlflow_srv, prefect_home, ops_home) -> dict[str, str]:
    """Environment of every child process: the test servers, nothing from the developer's profile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_API_URL=f"{prefect_srv.url}/api",
        PREFECT_UI_URL=prefect_srv.url,
        MLFLOW_TRACKING_URI=mlflow_srv.url,
        TICKERFLOW_HOME=str(ops_home),
    )
    return dict(environment.apply(env))


@pytest.fixture(scope="session")
def slice_csv(tmp_path_factory) -> Path:
    """A small slice of the real sample (two tickers, 520 days): enough for every split, quick to train."""
    sample = ROOT / "data" / "sample" / "stocks_daily_2000_2013.csv.gz"
    raw = pd.read_csv(sample)
    raw = raw[raw["Ticker"].isin(["AAPL", "MSFT"])].groupby("Ticker").tail(520)
    path = tmp_path_factory.mktemp("data") / "small.csv"
    raw.to_csv(path, index=False)
    return path
