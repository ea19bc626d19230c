"""`tickerflow serve` and `tickerflow ui`: the long-running commands.

`serve` runs the deployments of `deployments/prefect.yaml` on their schedules in this process
(`prefect.serve`): no work pool, no worker. Schedules only fire against a Prefect server (the
ephemeral API runs no scheduler), so without `PREFECT_API_URL` it says so and starts one on loopback.

`ui` starts `prefect server start` and `mlflow server` on loopback over the stores the embedded runs
use (`$PREFECT_HOME/prefect.db`; `$TICKERFLOW_HOME/mlflow.db` and `mlartifacts`), so earlier runs and
models appear. Ctrl-C, SIGTERM or SIGHUP (the terminal closed) stops both.

Both commands check their ports before they start anything: a port in use is one line naming it and the
option that moves it, and nothing is said to have started.

The servers are the projects' own commands (`tickerflow.runtime.servers`). Prefect's temporary API (the
one-shot commands') serves no UI, runs no scheduler and binds 127.0.0.1 only, so it fits neither command.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tickerflow.runtime.deployments import (
    DEPLOYMENTS_FILE,
    DeploymentSpec,
    load_deployment_specs,
    serve_deployments,
)
from tickerflow.runtime.servers import (
    Server,
    ServerError,
    http_ok,
    is_loopback,
    mlflow_server,
    port_problem,
    prefect_server,
    run_until_signalled,
    say,
    signal_name,
    start_all,
    stop_all,
    stopping_on_signals,
)
from tickerflow.tracking.home import home_subdir
from tickerflow_model.config import LOOPBACK, ServerOptions, field_default
from tickerflow_model.errors import ConfigError
from tickerflow_model.redaction import redact_uri

EXIT_NOT_STARTED = 2


def _option(name: str, **kwargs: Any) -> Any:
    """A Typer option documented by ServerOptions' field `name`."""
    return typer.Option(help=ServerOptions.model_fields[name].description, **kwargs)


def _default(name: str) -> Any:
    return field_default(ServerOptions, name)


def embedded_mlflow_store() -> tuple[str, Path]:
    """(backend store URI, artifact folder) the embedded runs use: see tasks/tracking.py."""
    from tickerflow.tracking.store import tracking_uri  # (MLflow: only when the command runs)

    return tracking_uri(), home_subdir("mlartifacts")


def ui(
    host: Annotated[str, _option("host")] = _default("host"),
    prefect_port: Annotated[int, _option("prefect_port")] = _default("prefect_port"),
    mlflow_port: Annotated[int, _option("mlflow_port")] = _default("mlflow_port"),
    startup_timeout: Annotated[float, _option("startup_timeout", hidden=True)] = _default("startup_timeout"),
) -> int:
    """Prefect UI + MLflow UI on loopback, over the stores the runs used. Ctrl-C stops both."""
    options = ServerOptions(
        host=host, prefect_port=prefect_port, mlflow_port=mlflow_port, startup_timeout=startup_timeout
    )
    backend, artifacts = embedded_mlflow_store()
    if backend.startswith(("http://", "https://")):
        print(
            f"tickerflow ui: MLFLOW_TRACKING_URI points at a tracking server ({redact_uri(backend)}); open its UI there. "
            "Unset it to browse the local store.",
            file=sys.stderr,
        )
        return EXIT_NOT_STARTED
    refusal = busy_ports(options.host, {"--prefect-port": options.prefect_port, "--mlflow-port": options.mlflow_port})
    if refusal:
        print(f"tickerflow ui: {refusal}", file=sys.stderr)
        return EXIT_NOT_STARTED
    if not is_loopback(options.host):
        print(
            f"tickerflow ui: warning: binding to {options.host}: the Prefect and MLflow servers have no authentication; "
            "anyone who can reach this address can read and change runs, models and deployments. "
            "Put them behind an authenticating proxy, or keep the default loopback address.",
            file=sys.stderr,
            flush=True,
        )
    artifacts.mkdir(parents=True, exist_ok=True)
    log_dir = home_subdir("logs")
    # The UI's own API calls must reach this server, not a PREFECT_API_URL set for something else.
    prefect = prefect_server(
        options.host, options.prefect_port, log_dir, env={"PREFECT_API_URL": None, "PREFECT_UI_API_URL": None}
    )
    mlflow_srv = mlflow_server(options.host, options.mlflow_port, backend, artifacts, log_dir)
    with stopping_on_signals(sigint=True):  # from the first server started to the last one stopped
        try:
            start_all([prefect, mlflow_srv], options.startup_timeout)
        except (ServerError, OSError) as exc:
            print(f"tickerflow ui: {exc}", file=sys.stderr)
            return EXIT_NOT_STARTED
        except KeyboardInterrupt as exc:  # start_all stopped what it had started
            say(f"tickerflow ui: stopped by {signal_name(exc)} while starting", sys.stderr)
            return 0
        say(f"Prefect UI: {prefect.url}", sys.stdout)
        say(f"MLflow UI:  {mlflow_srv.url}", sys.stdout)
        say(f"(MLflow store {backend}, artifacts {artifacts}; logs in {log_dir}). Ctrl-C stops both.", sys.stdout)
        return run_until_signalled([prefect, mlflow_srv], "tickerflow ui")


def busy_ports(host: str, ports: dict[str, int]) -> str | None:
    """One line naming each port (by its option) that a server could not listen on now; None when all are free."""
    if len(set(ports.values())) < len(ports):
        return f"{' and '.join(ports)} are both {next(iter(ports.values()))}: give each server a port of its own"
    problems = {option: (port, why) for option, port in ports.items() if (why := port_problem(host, port))}
    if not problems:
        return None
    if len(problems) > 1 and all(why == "is in use" for _, why in problems.values()):
        said = f"ports {' and '.join(str(port) for port, _ in problems.values())} on {host} are in use"
    else:
        said = "; ".join(f"port {port} on {host} {why}" for port, why in problems.values())
    other = "another" if len(problems) == 1 else "others"
    return f"{said}: choose {other} with {' and '.join(f'{option} N' for option in problems)} (nothing was started)"


def scheduler_port_refusal(port: int) -> str | None:
    """Why `serve` cannot start its Prefect server on loopback:`port`; None when it can. A Prefect server that
    already listens there is named, with how to serve on it instead."""
    url = f"http://{LOOPBACK}:{port}"
    if port_problem(LOOPBACK, port) == "is in use" and http_ok(f"{url}/api/health"):
        return (
            f"port {port} on {LOOPBACK} is in use by a Prefect server: to serve the deployments on it, "
            f"`export PREFECT_API_URL={url}/api` and run `tickerflow serve` again; or start another with "
            "--prefect-port N (nothing was started)"
        )
    return busy_ports(LOOPBACK, {"--prefect-port": port})


def configured_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL  # (Prefect: only when the command runs)

    return PREFECT_API_URL.value() or None


NO_SCHEDULER = (
    "tickerflow serve: PREFECT_API_URL is not set. Prefect's ephemeral API runs no scheduler, so the "
    "deployments' schedules would never fire."
)


DeploymentsFile = Annotated[
    Path, typer.Option("--file", help="prefect.yaml to read", show_default="the project's deployments/prefect.yaml")
]
Only = Annotated[list[str] | None, typer.Option(metavar="NAME", help="serve only this deployment (repeatable)")]
Interval = Annotated[
    float | None, typer.Option(help="run every N seconds instead of the cron schedules (to try it out)")
]
Params = Annotated[
    str | None,
    typer.Option(help='JSON merged into every deployment\'s parameters, e.g. \'{"config": {"train": {"epochs": 2}}}\''),
]
NoServer = Annotated[
    bool,
    typer.Option("--no-server", help="without PREFECT_API_URL, explain and exit instead of starting a local server"),
]


def serve(
    file: DeploymentsFile = DEPLOYMENTS_FILE,
    only: Only = None,
    interval: Interval = None,
    params: Params = None,
    no_server: NoServer = False,
    prefect_port: Annotated[int, _option("prefect_port")] = _default("prefect_port"),
    startup_timeout: Annotated[float, _option("startup_timeout", hidden=True)] = _default("startup_timeout"),
) -> int:
    """Run the deployments of prefect.yaml on their schedules, in this process."""
    options = ServerOptions(prefect_port=prefect_port, startup_timeout=startup_timeout)
    overrides = parameter_overrides(params)
    if interval is not None and interval <= 0:
        raise ConfigError(f"--interval must be a positive number of seconds, got {interval}")
    specs = load_deployment_specs(Path(file), only)
    api_url = configured_api_url()
    if not api_url:
        if no_server:
            print(
                f"{NO_SCHEDULER}\nStart a server (`prefect server start --host {LOOPBACK} --port {options.prefect_port}`), "
                f"then `export PREFECT_API_URL=http://{LOOPBACK}:{options.prefect_port}/api` and run `tickerflow serve` again.",
                file=sys.stderr,
            )
            return EXIT_NOT_STARTED
        refusal = scheduler_port_refusal(options.prefect_port)
        if refusal:
            print(f"tickerflow serve: {refusal}", file=sys.stderr)
            return EXIT_NOT_STARTED
    with stopping_on_signals() as received:  # from the local server's start to its stop
        return serve_until_stopped(specs, api_url, interval, overrides, options, received)


def serve_until_stopped(
    specs: list[DeploymentSpec],
    api_url: str | None,
    interval: float | None,
    overrides: dict,
    options: ServerOptions,
    received: list[int],
) -> int:
    """Serve the deployments (on a local Prefect server, started first, when there is no `api_url`) until a
    stop signal; the local server is stopped however serving ends."""
    server, stopped_by = None, None
    try:
        if not api_url:
            server = local_scheduler(options)
            if server is None:
                return EXIT_NOT_STARTED
            api_url = f"{server.url}/api"
        code = serve_deployments(specs, api_url, interval, overrides)
    except KeyboardInterrupt as exc:  # Ctrl-C, or a stop signal before Prefect's runner took them over
        stopped_by, code = signal_name(exc), 0
    finally:
        if server is not None:
            stop_all([server])
    if stopped_by or received:  # a SIGHUP while the runner served stopped it gracefully, as its SIGTERM does
        say(f"tickerflow serve: stopped by {stopped_by or signal.Signals(received[0]).name}", sys.stdout)
    return code


def parameter_overrides(params: str | None) -> dict:
    """`--params`: a JSON object, or a ConfigError saying what it is instead."""
    try:
        overrides = json.loads(params) if params else {}
    except ValueError as exc:
        raise ConfigError(f"--params must be a JSON object, got {params!r}: {exc}") from exc
    if not isinstance(overrides, dict):
        raise ConfigError(f"--params must be a JSON object, got {params!r}")
    return overrides


def local_scheduler(options: ServerOptions) -> Server | None:
    """A Prefect server on loopback for the schedules to fire on, started; None (and why, on stderr) if it would not start."""
    server = prefect_server(LOOPBACK, options.prefect_port, home_subdir("logs"), env={"PREFECT_API_URL": None})
    print(f"{NO_SCHEDULER}\nStarting a local Prefect server at {server.url} (log {server.log_path}) ...", flush=True)
    try:
        start_all([server], options.startup_timeout)
    except (ServerError, OSError) as exc:
        print(f"tickerflow serve: {exc}", file=sys.stderr)
        return None
    print(f"Prefect UI: {server.url}", flush=True)
    return server
