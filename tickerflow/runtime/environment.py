"""The environment every tickerflow process starts from: defaults, never overrides of what the user set.

Prefect and MLflow read these when they are imported or start a server, so `apply()` runs before either
is imported: first thing in the CLI's `main`, at the top of the tests' conftest and of each benchmark.
A child process gets them through `apply(its_env)`.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

DEFAULTS: dict[str, str] = {
    # Both try the network on start-up; a pipeline on an air-gapped machine must not. Prefect's analytics
    # also print a harmless "database is locked" traceback when several processes start at once.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # MLflow 3.17 reads DO_NOT_TRACK only as "true", so its telemetry needs its own switch. Left on, its
    # client puts a session id into os.environ and takes it out again from its own thread when it gives
    # up (no network): a thread of the run that iterates os.environ at that moment (requests does, for
    # proxies, on every call to a tracking server) fails with KeyError('_MLFLOW_TELEMETRY_SESSION_ID').
    # Seen with 4 runs at once against a tracking server (bench/team_servers.py).
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # MLflow otherwise dry-runs pip against the package index for every logged model.
    "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",
    # The temporary Prefect API migrates its database on first start: 20 s is too short on busy cores.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    # Prefect's default cache policy hashes every task's inputs (cloudpickle of the price frame, the
    # evaluation) to a cache key, on each call; tickerflow's tasks keep no Prefect cache (results are not
    # persisted; the window dataset and the validation have their own), so the hashing is pure cost:
    # about half a second per task that takes a million-row frame.
    "PREFECT_TASKS_DEFAULT_NO_CACHE": "true",
    # MLflow imports GitPython, which warns at import when no git executable is found.
    "GIT_PYTHON_REFRESH": "quiet",
    # Against a tracking server MLflow prints "View run ..." and "View experiment ..." links to stdout at
    # the end of every run; stdout carries the command's table or JSON only (the run's link is printed
    # by tickerflow, once).
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # MLflow's client retries a call to a tracking server 7 times with a doubling back-off, each try
    # waiting up to 120 s: minutes before a run fails when the server went away. 4 tries (2+4+8+16 s of
    # back-off) ride out a server restart; a read that waits 60 s is a server that is not answering.
    # (The commands check the configured servers before they start: `reachability`. Prefect's client
    # keeps its own bounds: PREFECT_CLIENT_MAX_RETRIES, 5 retries with back-off, and it retries a refused
    # connection only after it has connected once.)
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def apply(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set each default that `env` (this process's environment unless given) does not set; returns `env`."""
    target = os.environ if env is None else env
    for name, value in DEFAULTS.items():
        target.setdefault(name, value)
    return target
