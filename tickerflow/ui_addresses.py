"""Where the UIs are: the one place for the ports `tickerflow ui` serves on and the links that point there.

A local run's records live in `$PREFECT_HOME/prefect.db` and `$TICKERFLOW_HOME/mlflow.db`, whatever API served
the run: the temporary Prefect API a command starts is gone once the command exits, but `tickerflow ui`
serves the same databases at these addresses (their ports are `tickerflow_model.config`'s), so links to a local run
point here. Light: the CLI reads it for its help text, and every layer above the core may import it.
"""

from __future__ import annotations  # noqa: E402

import os

from tickerflow_model.config import LOOPBACK

PREFECT_UI_URL_ENV = "TICKERFLOW_PREFECT_UI_URL"  # where another Prefect UI serves the local database
MLFLOW_UI_URL_ENV = "TICKERFLOW_MLFLOW_UI_URL"  # where another MLflow UI serves the local store
# Set by the temporary Prefect API to the API URL it serves: a flow run on it is shown by `tickerflow ui`.
TEMPORARY_API_ENV = "TICKERFLOW_TEMPORARY_PREFECT_API"


def local_ui_url(env_name: str, port: int) -> str:
    """The address named by the environment variable `env_name`, else `tickerflow ui`'s on `port`."""
    return (os.environ.get(env_name) or f"http://{LOOPBACK}:{port}").rstrip("/")


def on_temporary_api() -> bool:
    """Whether this process's Prefect API is the temporary one a tickerflow command started."""
    api = os.environ.get(TEMPORARY_API_ENV)
    return bool(api) and os.environ.get("PREFECT_API_URL") == api
