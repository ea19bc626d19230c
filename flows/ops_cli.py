"""`tickerflow serve` and `tickerflow ui`: the long-running commands, and the servers they start.

`serve` runs the deployments of `deployments/prefect.yaml` on their schedules in this process
(`prefect.serve`): no work pool, no worker. Schedules only fire against a Prefect server (the
ephemeral API runs no scheduler), so without `PREFECT_API_URL` it says so and starts one on loopback.

`ui` starts `prefect server start` and `mlflow server` on loopback over the stores the embedded runs
use (`$PREFECT_HOME/prefect.db`; `$TICKERFLOW_HOME/mlflow.db` and `mlartifacts`), so earlier runs and
models appear. Ctrl-C or SIGTERM stops both.

The servers are the projects' own commands, judged by their own health endpoints. Prefect's
`SubprocessASGIServer` (the one-shot commands' temporary API) serves no UI, runs no scheduler and binds
127.0.0.1 only, so it fits neither command; what is left here is start, wait for health, stop the process
group (`mlflow server` runs uvicorn as a child of its own).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import Field

from tickerflow import environment
from tickerflow.config_values import field_default
from tickerflow_model.config import Config
from tickerflow_model.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENTS_FILE = ROOT / "deployments" / "prefect.yaml"
LOOPBACK = "127.0.0.1"
STOP_SECONDS = 20.0
EXIT_NOT_STARTED = 2


class ServerOptions(Config):
    """Where `ui` and `serve` start their servers."""

    host: str = Field(LOOPBACK, description="address to bind the servers to (loopback: only this machine)")
    prefect_port: int = Field(4200, ge=1, le=65535, description="port of the Prefect server (UI and API)")
    mlflow_port: int = Field(5000, ge=1, le=65535, description="port of the MLflow tracking server and UI")
    # a cold `prefect server start` migrates its database first; 2 busy cores are slow
    startup_timeout: float = Field(120.0, gt=0, description="seconds a server may take to answer its health check")


def _option(name: str, **kwargs: Any) -> Any:
    """A Typer option documented by ServerOptions' field `name`."""
    return typer.Option(help=ServerOptions.model_fields[name].description, **kwargs)


def _default(name: str) -> Any:
    return field_default(ServerOptions, name)


class ServerError(RuntimeError):
    """A server did not come up (or died): one line naming it, the last line of its log and the log file."""


# --- servers as child processes -----------------------------------------------------------------


@dataclass
class Server:
    """A child process serving HTTP, in its own process group so stopping it stops its workers too."""

    name: str
    command: list[str]
    url: str
    health_url: str
    log_path: Path
    env: dict[str, str | None] = field(default_factory=dict, repr=False)  # None: unset it for the child
    process: subprocess.Popen | None = field(default=None, repr=False)
    # False: the server stays in this process's group, so whatever kills the group (a SIGKILL sent to
    # it, Ctrl-C in a terminal) reaches the server too, as for a server that belongs to one command.
    own_process_group: bool = True

    def start(self) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**os.environ, **self.env}
        env = environment.apply({k: v for k, v in merged.items() if v is not None})
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                process_group=0 if self.own_process_group else None,
            )
        return self

    def failure(self, what: str) -> str:
        """`what`, the last line of the server's log, and where the log is: one line."""
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        last = f": {lines[-1].strip()}" if lines else ""
        return f"{self.name} {what}{last} (log {self.log_path})"

    def wait_healthy(self, timeout: float) -> None:
        """Poll the health endpoint until it answers 200; fail at once if the process exits."""
        deadline = time.monotonic() + timeout
        while not http_ok(self.health_url):
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(self.failure(f"exited with code {self.process.returncode} before serving {self.url}"))
            if time.monotonic() > deadline:
                raise ServerError(self.failure(f"did not answer {self.health_url} within {timeout:.0f}s"))
            time.sleep(0.25)  # polling interval, not synchronisation: the loop checks the real condition

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_SECONDS) -> int | None:
        """SIGTERM the server, wait, then SIGKILL what is left of it. Returns the exit code."""
        if self.process is None:
            return None
        self._signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        self._signal(signal.SIGKILL)  # a hung server, or workers it left in its group
        self.process.wait()
        return self.process.returncode

    def _signal(self, sig: int) -> None:
        """To the server's own process group; to the server alone when it shares this process's group."""
        if self.own_process_group:
            _signal_group(self.process.pid, sig)
        elif self.process.poll() is None:
            self.process.send_signal(sig)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def prefect_server(host: str, port: int, log_dir: Path, env: dict[str, str | None] | None = None) -> Server:
    """`prefect server start` on host:port; its database is `$PREFECT_HOME/prefect.db`, as for embedded runs."""
    url = f"http://{host}:{port}"
    return Server(
        name="Prefect server",
        command=[sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
        url=url, health_url=f"{url}/api/health", log_path=log_dir / f"prefect-server-{port}.log", env=env or {},
    )


def mlflow_server(host: str, port: int, backend_store_uri: str, artifacts_destination: Path, log_dir: Path) -> Server:
    """`mlflow server` over an existing store; artifacts are served (proxied) from `artifacts_destination`."""
    url = f"http://{host}:{port}"
    return Server(
        name="MLflow server",
        command=[
            sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
            "--artifacts-destination", str(artifacts_destination), "--host", host, "--port", str(port), "--workers", "1",
        ],
        url=url, health_url=f"{url}/health", log_path=log_dir / f"mlflow-server-{port}.log",
    )


def embedded_mlflow_store() -> tuple[str, Path]:
    """(backend store URI, artifact folder) the embedded runs use: see tasks/tracking.py."""
    from tickerflow.tasks.storage import home_subdir
    from tickerflow.tasks.tracking import tracking_uri

    return tracking_uri(), home_subdir("mlartifacts")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a service manager, `kill`) stops the servers the way Ctrl-C does."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_all(servers: list[Server], timeout: float) -> None:
    """Start the servers side by side, then wait for each; stop them all if one fails or on Ctrl-C."""
    started: list[Server] = []
    try:
        with sigterm_as_interrupt():
            for server in servers:
                started.append(server.start())
            for server in started:
                server.wait_healthy(timeout)
    except BaseException:
        stop_all(started)
        raise


def run_until_signalled(servers: list[Server]) -> int:
    """Block until Ctrl-C or SIGTERM (-> 0) or until a server dies (-> 1); stop every server either way."""
    try:
        with sigterm_as_interrupt():
            while not (dead := [s for s in servers if not s.running()]):
                time.sleep(0.5)  # a supervisor's poll; a signal interrupts it at once
        print(f"tickerflow: {dead[0].failure(f'exited with code {dead[0].process.returncode}')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tickerflow: stopping {', '.join(s.name for s in servers)}", flush=True)
        return 0
    finally:
        stop_all(servers)


def stop_all(servers: list[Server]) -> None:
    for server in reversed(servers):
        server.stop()


# --- tickerflow ui --------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1; a name is resolved, and one that does not resolve is not loopback."""
    import ipaddress
    import socket

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def ui(
    host: Annotated[str, _option("host")] = _default("host"),
    prefect_port: Annotated[int, _option("prefect_port")] = _default("prefect_port"),
    mlflow_port: Annotated[int, _option("mlflow_port")] = _default("mlflow_port"),
    startup_timeout: Annotated[float, _option("startup_timeout", hidden=True)] = _default("startup_timeout"),
) -> int:
    """Prefect UI + MLflow UI on loopback, over the stores the runs used. Ctrl-C stops both."""
    from tickerflow.tasks.storage import home_subdir

    options = ServerOptions(host=host, prefect_port=prefect_port, mlflow_port=mlflow_port, startup_timeout=startup_timeout)
    backend, artifacts = embedded_mlflow_store()
    if backend.startswith(("http://", "https://")):
        from tickerflow_model.redaction import redact_uri

        print(f"tickerflow ui: MLFLOW_TRACKING_URI points at a tracking server ({redact_uri(backend)}); open its UI there. "
              "Unset it to browse the local store.", file=sys.stderr)
        return EXIT_NOT_STARTED
    if not is_loopback(options.host):
        print(
            f"tickerflow ui: warning: binding to {options.host}: the Prefect and MLflow servers have no authentication; "
            "anyone who can reach this address can read and change runs, models and deployments. "
            "Put them behind an authenticating proxy, or keep the default loopback address.",
            file=sys.stderr, flush=True,
        )
    artifacts.mkdir(parents=True, exist_ok=True)
    log_dir = home_subdir("logs")
    # The UI's own API calls must reach this server, not a PREFECT_API_URL set for something else.
    prefect = prefect_server(options.host, options.prefect_port, log_dir, env={"PREFECT_API_URL": None, "PREFECT_UI_API_URL": None})
    mlflow_srv = mlflow_server(options.host, options.mlflow_port, backend, artifacts, log_dir)
    try:
        start_all([prefect, mlflow_srv], options.startup_timeout)
    except (ServerError, OSError) as exc:
        print(f"tickerflow ui: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    print(f"Prefect UI: {prefect.url}", flush=True)
    print(f"MLflow UI:  {mlflow_srv.url}", flush=True)
    print(f"(MLflow store {backend}, artifacts {artifacts}; logs in {log_dir}). Ctrl-C stops both.", flush=True)
    return run_until_signalled([prefect, mlflow_srv])


# --- tickerflow serve -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentSpec:
    """One entry of prefect.yaml's `deployments:` list, as `serve` needs it."""

    name: str
    entrypoint: str
    parameters: dict[str, Any]
    tags: tuple[str, ...]
    description: str
    crons: tuple[tuple[str, str], ...]  # (cron, timezone)
    triggers: tuple[dict[str, Any], ...] = ()  # prefect.yaml `triggers:` entries (deployment triggers)

    def __post_init__(self) -> None:
        if ":" not in self.entrypoint or not self.entrypoint.split(":", 1)[0].endswith(".py"):
            raise ConfigError(f"deployment {self.name!r}: entrypoint must be path/to/file.py:flow, got {self.entrypoint!r}")

    @property
    def module(self) -> str:
        # flows/x.py is installed as tickerflow.flows.x: import it by that name, never as a top-level `flows`
        return "tickerflow." + self.entrypoint.split(":", 1)[0].removesuffix(".py").replace("/", ".")

    @property
    def flow_attribute(self) -> str:
        return self.entrypoint.split(":", 1)[1]


def load_deployment_specs(path: Path = DEPLOYMENTS_FILE, only: list[str] | None = None) -> list[DeploymentSpec]:
    """The deployments defined in prefect.yaml (all, or those named in `only`)."""
    import yaml

    document = yaml.safe_load(Path(path).read_text()) or {}
    specs = []
    for entry in document.get("deployments") or []:
        crons = tuple((s["cron"], s.get("timezone", "UTC")) for s in entry.get("schedules") or [] if "cron" in s)
        specs.append(
            DeploymentSpec(
                name=entry["name"], entrypoint=entry["entrypoint"], parameters=entry.get("parameters") or {},
                tags=tuple(entry.get("tags") or ()), description=entry.get("description", ""), crons=crons,
                triggers=tuple(entry.get("triggers") or ()),
            )
        )
    names = [s.name for s in specs]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise ConfigError(f"no deployment named {', '.join(unknown)} in {path}; it defines {', '.join(names)}")
    return [s for s in specs if not only or s.name in only]


def anchor_data_paths(parameters: dict[str, Any], root: Path = ROOT) -> dict[str, Any]:
    """Relative data paths in prefect.yaml are relative to the project root; make them absolute.

    `serve` may be started from any folder and runs each flow in a subprocess of its own.
    """
    out = json.loads(json.dumps(parameters))

    def anchor(value: str) -> str:
        if "://" in value or Path(value).is_absolute():
            return value
        return str(root / value)

    if isinstance(out.get("data"), str):
        out["data"] = anchor(out["data"])
    source = (out.get("config") or {}).get("ingest", {}).get("source")
    if isinstance(source, str):
        out["config"]["ingest"]["source"] = anchor(source)
    return out


def merge_parameters(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: `--params '{"config": {"train": {"epochs": 1}}}'` changes only that field."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge_parameters(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def to_runner_deployment(spec: DeploymentSpec, interval: float | None, overrides: dict[str, Any]):
    import importlib

    from prefect.schedules import Cron, Interval

    flow = getattr(importlib.import_module(spec.module), spec.flow_attribute)
    if interval:
        # anchored now, so the first run is one interval away rather than at the next multiple since 2020
        schedules = [Interval(interval, anchor_date=datetime.now(timezone.utc))]
    else:
        schedules = [Cron(cron, timezone=tz) for cron, tz in spec.crons]
    from prefect.events import DeploymentTriggerTypes
    from pydantic import TypeAdapter

    triggers = [TypeAdapter(DeploymentTriggerTypes).validate_python(t) for t in spec.triggers]
    return flow.to_deployment(
        name=spec.name,
        triggers=triggers or None,
        parameters=merge_parameters(anchor_data_paths(spec.parameters), overrides),
        tags=list(spec.tags),
        description=spec.description,
        schedules=schedules,
    )


def temporary_prefect_api(log_dir: Path, port: int | None = None) -> Server:
    """The API server Prefect starts for itself when none is configured (`SubprocessASGIServer`): its API
    app under uvicorn on 127.0.0.1, no UI, with this process's Prefect settings; its database is
    `$PREFECT_HOME/prefect.db`. On a free port unless one is given.

    In a process group of its own, so that a signal to the command's group does not stop it before the
    command has recorded its final state (the command stops it last); and it stops itself when this
    process dies without stopping it (`flows/temporary_api.py`)."""
    import prefect
    from prefect.settings import get_current_settings

    if port is None:
        with contextlib.closing(socket.socket()) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
    url = f"http://{LOOPBACK}:{port}"
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
               "tickerflow.flows.temporary_api:create_app", "--host", LOOPBACK, "--port", str(port),
               "--log-level", "error", "--lifespan", "on"]
    env = {
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
        "PREFECT_API_URL": None, "TICKERFLOW_PARENT_PID": str(os.getpid()),
    }
    return Server(name="Prefect's temporary API", command=command, url=url, health_url=f"{url}/api/health",
                  log_path=log_dir / "prefect-temporary-api.log", env=env)


def configured_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


NO_SCHEDULER = (
    "tickerflow serve: PREFECT_API_URL is not set. Prefect's ephemeral API runs no scheduler, so the "
    "deployments' schedules would never fire."
)


def serve(
    file: Annotated[Path, typer.Option(help="prefect.yaml to read", show_default="the project's deployments/prefect.yaml")
                    ] = DEPLOYMENTS_FILE,
    only: Annotated[list[str] | None, typer.Option(metavar="NAME", help="serve only this deployment (repeatable)")] = None,
    interval: Annotated[float | None, typer.Option(help="run every N seconds instead of the cron schedules (to try it out)")
                        ] = None,
    params: Annotated[str | None, typer.Option(
        help='JSON merged into every deployment\'s parameters, e.g. \'{"config": {"train": {"epochs": 2}}}\'')] = None,
    no_server: Annotated[bool, typer.Option("--no-server",
                                            help="without PREFECT_API_URL, explain and exit instead of starting a local server")
                         ] = False,
    prefect_port: Annotated[int, _option("prefect_port")] = _default("prefect_port"),
    startup_timeout: Annotated[float, _option("startup_timeout", hidden=True)] = _default("startup_timeout"),
) -> int:
    """Run the deployments of prefect.yaml on their schedules, in this process."""
    options = ServerOptions(prefect_port=prefect_port, startup_timeout=startup_timeout)
    try:
        overrides = json.loads(params) if params else {}
    except ValueError as exc:
        raise ConfigError(f"--params must be a JSON object, got {params!r}: {exc}") from exc
    if not isinstance(overrides, dict):
        raise ConfigError(f"--params must be a JSON object, got {params!r}")
    if interval is not None and interval <= 0:
        raise ConfigError(f"--interval must be a positive number of seconds, got {interval}")
    specs = load_deployment_specs(Path(file), only)
    server: Server | None = None
    api_url = configured_api_url()
    if not api_url:
        if no_server:
            print(
                f"{NO_SCHEDULER}\nStart a server (`prefect server start --host {LOOPBACK} --port {options.prefect_port}`), "
                f"then `export PREFECT_API_URL=http://{LOOPBACK}:{options.prefect_port}/api` and run `tickerflow serve` again.",
                file=sys.stderr,
            )
            return EXIT_NOT_STARTED
        from tickerflow.tasks.storage import home_subdir

        server = prefect_server(LOOPBACK, options.prefect_port, home_subdir("logs"), env={"PREFECT_API_URL": None})
        print(f"{NO_SCHEDULER}\nStarting a local Prefect server at {server.url} (log {server.log_path}) ...", flush=True)
        try:
            start_all([server], options.startup_timeout)
        except (ServerError, OSError) as exc:
            print(f"tickerflow serve: {exc}", file=sys.stderr)
            return EXIT_NOT_STARTED
        api_url = f"{server.url}/api"
        print(f"Prefect UI: {server.url}", flush=True)
    try:
        return serve_deployments(specs, api_url, interval, overrides)
    except KeyboardInterrupt:  # Ctrl-C is how a long-running serve is meant to end
        print("tickerflow serve: stopped", flush=True)
        return 0
    finally:
        if server is not None:
            server.stop()


def serve_deployments(specs: list[DeploymentSpec], api_url: str, interval: float | None, overrides: dict) -> int:
    from prefect import serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # The environment too: the runner starts each flow run in a subprocess.
    os.environ["PREFECT_API_URL"] = api_url
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        deployments = [to_runner_deployment(spec, interval, overrides) for spec in specs]
        for spec in specs:
            when = f"every {interval:g}s" if interval else "; ".join(f"{c} ({tz})" for c, tz in spec.crons)
            print(f"serving {spec.name}: {spec.entrypoint}, {when}", flush=True)
        # one flow run at a time: two trainings on one machine only slow each other down
        serve(*deployments, limit=1, print_starting_message=True)
    return 0
