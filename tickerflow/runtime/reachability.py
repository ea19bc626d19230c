"""Whether the servers a command is pointed at answer, checked once before the command starts its work.

With `MLFLOW_TRACKING_URI` or `PREFECT_API_URL` naming a server that is down, MLflow's and Prefect's clients
retry each call for a while and then fail with a traceback of their own, deep inside a flow run. One HTTP
request to each configured server before the command begins turns that into one line naming the server and
the setting. A server that goes down later is the libraries' business: their retries are bounded by the
settings `environment.DEFAULTS` gives them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import httpx

from tickerflow_model.errors import TickerflowError
from tickerflow_model.redaction import redact_uri

PROBE_SECONDS = 10.0  # connect and read: a loaded server on busy cores still answers its health check within it

MLFLOW_SETTING = "MLFLOW_TRACKING_URI"
PREFECT_SETTING = "PREFECT_API_URL"


class ServerUnreachable(TickerflowError, ConnectionError):
    """A configured server does not answer: the message names it and the setting that points at it."""


def answers(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether anything answers HTTP at `url`: any status counts (a proxy's 401 or 404 is a server that is
    up); only a refused or timed-out connection does not."""
    try:
        httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return False
    return True


def _base(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0].rstrip("/")


def unreachable(what: str, url: str, setting: str) -> ServerUnreachable:
    shown = redact_uri(_base(url))
    return ServerUnreachable(
        f"the {what} at {shown} is not reachable ({setting}); start it or point {setting} elsewhere"
    )


def check_mlflow(env: Mapping[str, str] | None = None) -> None:
    """An http(s) `MLFLOW_TRACKING_URI` must answer; a local store (the default, a SQLite file) is not probed."""
    uri = (os.environ if env is None else env).get(MLFLOW_SETTING, "")
    if uri.lower().startswith(("http://", "https://")) and not answers(f"{_base(uri)}/health"):
        raise unreachable("MLflow tracking server", uri, MLFLOW_SETTING)


def check_prefect(api_url: str | None) -> None:
    """A configured Prefect API must answer; None (no API configured: a temporary one is started) passes."""
    if api_url and not answers(f"{_base(api_url)}/health"):
        raise unreachable("Prefect API", api_url, PREFECT_SETTING)


def configured_prefect_api() -> str | None:
    """PREFECT_API_URL as Prefect reads it: the environment, else the active profile."""
    from prefect.settings import PREFECT_API_URL  # (Prefect: only for the commands that use its API)

    return PREFECT_API_URL.value() or None


def check_servers(mlflow: bool, prefect: bool, prefect_profile: bool = False) -> None:
    """Probe the configured servers a command needs (MLflow first); raise `ServerUnreachable` for the first
    one that does not answer.

    With `prefect`, a PREFECT_API_URL of the environment is probed (no import); with `prefect_profile`, one
    that only the active Prefect profile sets (reading it imports Prefect's settings: seconds)."""
    if mlflow:
        check_mlflow()
    if prefect and os.environ.get(PREFECT_SETTING):
        check_prefect(os.environ[PREFECT_SETTING])
    if prefect_profile and not os.environ.get(PREFECT_SETTING):
        check_prefect(configured_prefect_api())
