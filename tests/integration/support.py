"""Helpers the integration tests share: free loopback ports, the Prefect REST calls they make, CLI runs, the
PostgreSQL the tests may use and the pair of servers a team shares."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tickerflow.runtime import environment
from tickerflow.runtime.deployments import ROOT
from tickerflow.runtime.postgres import PostgresAddress
from tickerflow.runtime.servers import Server

LOOPBACK = "127.0.0.1"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
BUSY_RETRIES = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@dataclass
class PrefectAPI:
    """The few REST calls the tests make, against one server."""

    api_url: str

    def get(self, path: str) -> dict | list:
        return self._request("GET", path).json()

    def post(self, path: str, body: dict | None = None) -> dict | list:
        return self._request("POST", path, body or {}).json()

    def delete(self, path: str) -> None:
        self._request("DELETE", path)

    def _request(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        """One REST call. Prefect's server answers 503 for an error a client may retry (its database busy
        under load); such a call is tried again, as Prefect's own client does, up to BUSY_RETRIES times."""
        for attempt in range(BUSY_RETRIES + 1):
            response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
            if response.status_code != 503 or attempt == BUSY_RETRIES:
                break
            time.sleep(1 + attempt)
        response.raise_for_status()
        return response

    def flow_run(self, flow_run_id: str) -> dict:
        return self.get(f"/flow_runs/{flow_run_id}")

    def task_runs(self, flow_run_id: str) -> list[dict]:
        return self.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})

    def artifacts(self, flow_run_id: str) -> list[dict]:
        return self.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})

    def flow_runs_of(self, deployment_id: str) -> list[dict]:
        return self.post("/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}})

    def deployment(self, flow_name: str, deployment_name: str) -> dict:
        return self.get(f"/deployments/name/{flow_name}/{deployment_name}")

    def wait_terminal(self, flow_run_id: str, seconds: float) -> dict:
        deadline = time.monotonic() + seconds
        run = self.flow_run(flow_run_id)
        while run["state_type"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(1)  # polling the API for the real state, bounded by the deadline
            run = self.flow_run(flow_run_id)
        return run


def run_cli(args: list[str], env: dict[str, str], timeout: float, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m <args>`, from the project root unless told otherwise, as a user would run it there."""
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    return proc


POSTGRES_ENV = "TICKERFLOW_TEST_POSTGRES"  # postgresql://USER@HOST:PORT of the PostgreSQL the tests may use
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def postgres_address() -> PostgresAddress:
    return PostgresAddress.parse(os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES)


def postgres_absent_line(address: PostgresAddress) -> str:
    """What the suite says, once, where it cannot reach PostgreSQL."""
    return f"PostgreSQL not reachable on {address.where}: integration tests run on SQLite only"


@dataclass
class TeamServers:
    """A Prefect server and an MLflow tracking server (proxied artifacts) on one backend, as a team shares them."""

    backend: str  # "sqlite" or "postgresql"
    prefect: Server
    mlflow: Server

    @property
    def api(self) -> PrefectAPI:
        return PrefectAPI(f"{self.prefect.url}/api")

    def env(self, home: Path) -> dict[str, str]:
        """The environment of a `tickerflow` command run from its own home (a machine of the team): these
        servers, nothing from the developer's profile."""
        (home / "prefect").mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
        env.update(
            TICKERFLOW_HOME=str(home),
            PREFECT_HOME=str(home / "prefect"),
            PREFECT_API_URL=f"{self.prefect.url}/api",
            PREFECT_UI_URL=self.prefect.url,
            MLFLOW_TRACKING_URI=self.mlflow.url,
        )
        return dict(environment.apply(env))
