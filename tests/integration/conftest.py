"""Real servers on loopback for the integration tests: one Prefect server and one MLflow tracking server
per session, started as subprocesses on free ports and stopped even when a test fails.

These tests talk to their own servers through explicit URLs (child-process environments, httpx, an
MlflowClient with a URI), never through the in-process `prefect_harness` the other tests use.

The session's pair runs on SQLite (`server_pair`). A test that asks for `team_servers` runs twice: on that
pair, and on a second pair backed by PostgreSQL (databases of their own, made for the session and dropped
after), started the first time a test needs it. Where PostgreSQL does not answer (TICKERFLOW_TEST_POSTGRES,
default postgresql://postgres@127.0.0.1:5432), the PostgreSQL runs are skipped with one reason, which the
summary folds into one line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from integration.support import PrefectAPI, TeamServers, free_port, postgres_absent_line, postgres_address
from tickerflow.runtime import environment
from tickerflow.runtime.deployments import ROOT
from tickerflow.runtime.postgres import unique_names
from tickerflow.runtime.servers import Server, mlflow_server, prefect_server
from tickerflow_model.config import LOOPBACK


def pytest_collection_modifyitems(items) -> None:
    """Under pytest-xdist (`make test`), every test here runs on one worker: they share the session's servers,
    which a second worker would start again. Where PostgreSQL does not answer, the tests that need it are
    skipped by a mark with one reason, which the summary folds into one line per file."""
    on_postgres = []
    for item in items:
        if "integration" in item.nodeid.split("::")[0].split("/"):
            item.add_marker(pytest.mark.xdist_group("servers"))
            if _needs_postgres(item):
                on_postgres.append(item)
    if on_postgres and (address := postgres_address()).problem() is not None:
        for item in on_postgres:
            item.add_marker(pytest.mark.skip(reason=postgres_absent_line(address)))


def _needs_postgres(item) -> bool:
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("team_servers") if callspec is not None else None
    return backend == "postgresql" or "postgres_servers" in getattr(item, "fixturenames", ())


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
def postgres_server_pair(tmp_path_factory):
    """The same pair on PostgreSQL: MLflow's store `postgresql+psycopg2://`, Prefect's `postgresql+asyncpg://`,
    each in a database of its own made for this session and dropped after it."""
    address = postgres_address()
    problem = address.problem()
    if problem is not None:
        pytest.skip(postgres_absent_line(address))
    mlflow_db, prefect_db = unique_names()
    base = tmp_path_factory.mktemp("pg-servers")
    try:
        address.create_database(mlflow_db)
        address.create_database(prefect_db)
        env = {
            "PREFECT_HOME": str(base / "prefect-home"),
            "PREFECT_API_URL": None,
            "PREFECT_UI_API_URL": None,
            "PREFECT_API_DATABASE_CONNECTION_URL": address.prefect_database_url(prefect_db),
        }
        prefect = prefect_server(LOOPBACK, free_port(), base, env=env)
        mlflow = mlflow_server(LOOPBACK, free_port(), address.mlflow_store_uri(mlflow_db), base / "artifacts", base)
        _start_all(prefect, mlflow)
        try:
            yield prefect, mlflow
        finally:
            _stop_all(prefect, mlflow)
    finally:
        address.drop_database(mlflow_db)
        address.drop_database(prefect_db)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def team_servers(request) -> TeamServers:
    """A Prefect and an MLflow server as a team shares them, on each backend: a test that asks for it runs twice."""
    pair = request.getfixturevalue("server_pair" if request.param == "sqlite" else "postgres_server_pair")
    return TeamServers(request.param, *pair)


@pytest.fixture(scope="session")
def postgres_servers(postgres_server_pair) -> TeamServers:
    """The PostgreSQL-backed pair alone, for what only it is asked to carry (several machines at once)."""
    return TeamServers("postgresql", *postgres_server_pair)


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
