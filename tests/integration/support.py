"""Helpers the integration tests share: free loopback ports, the Prefect REST calls they make, CLI runs."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from tickerflow.runtime.deployments import ROOT

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


def run_cli(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """`python -m <args>` from the project root, as a user would run it there."""
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    return proc
