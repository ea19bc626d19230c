"""`tickerflow serve` and `tickerflow ui`: the long-running commands, and the servers they start.

`serve` runs the deployments of `deployments/prefect.yaml` on their schedules in this process
(`prefect.serve`): no work pool, no worker. Schedules only fire against a Prefect server (the
ephemeral API runs no scheduler), so without `PREFECT_API_URL` it says so and starts one on loopback.

`ui` starts `prefect server start` and `mlflow server` on loopback over the stores the embedded runs
use: Prefect's `$PREFECT_HOME/prefect.db` and MLflow's `$TICKERFLOW_HOME/mlflow.db` with the artifacts
in `$TICKERFLOW_HOME/mlartifacts`, so earlier runs and models appear. Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tickerflow_model.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENTS_FILE = ROOT / "deployments" / "prefect.yaml"
LOOPBACK = "127.0.0.1"
PREFECT_PORT = 4200
MLFLOW_PORT = 5000
STARTUP_SECONDS = 120.0  # a cold `prefect server start` migrates its database first; 2 busy cores are slow
STOP_SECONDS = 20.0
EXIT_NOT_STARTED = 2


class ServerError(RuntimeError):
    """A server did not come up (or died): the message names it and shows the end of its log."""


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

    def start(self) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it open for its lifetime
        try:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.child_environment(), start_new_session=True,
            )
        finally:
            log.close()
        return self

    def child_environment(self) -> dict[str, str]:
        merged = {**os.environ, **self.env}
        return {k: v for k, v in merged.items() if v is not None}

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_healthy(self, timeout: float = STARTUP_SECONDS) -> None:
        """Poll the health endpoint until it answers 200; fail early if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with code {self.process.returncode} before serving {self.url}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if http_ok(self.health_url):
                return
            time.sleep(0.25)  # polling interval, not synchronisation: the loop checks the real condition
        raise ServerError(f"{self.name} did not answer {self.health_url} within {timeout:.0f}s; log {self.log_path}:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_SECONDS) -> int | None:
        """SIGTERM the whole process group, wait, SIGKILL what is left. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        _signal_group(self.process.pid, signal.SIGKILL)  # workers the server left behind in its group
        return self.process.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URLs we built
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def prefect_server(host: str, port: int, log_dir: Path, env: dict[str, str | None] | None = None) -> Server:
    """`prefect server start` on host:port; its database is `$PREFECT_HOME/prefect.db`, as for embedded runs."""
    url = f"http://{host}:{port}"
    return Server(
        name="Prefect server",
        command=[sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
        url=url,
        health_url=f"{url}/api/health",
        log_path=log_dir / f"prefect-server-{port}.log",
        env={"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", **(env or {})},
    )


def mlflow_server(host: str, port: int, backend_store_uri: str, artifacts_destination: Path, log_dir: Path) -> Server:
    """`mlflow server` over an existing store; artifacts are served (proxied) from `artifacts_destination`."""
    url = f"http://{host}:{port}"
    return Server(
        name="MLflow server",
        command=[
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", backend_store_uri,
            "--artifacts-destination", str(artifacts_destination),
            "--host", host, "--port", str(port), "--workers", "1",
        ],
        url=url,
        health_url=f"{url}/health",
        log_path=log_dir / f"mlflow-server-{port}.log",
        env={"MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true"},
    )


def embedded_mlflow_store() -> tuple[str, Path]:
    """(backend store URI, artifact folder) the embedded runs use: see tasks/tracking.py."""
    from tickerflow.tasks.storage import home_subdir
    from tickerflow.tasks.tracking import tracking_uri

    return tracking_uri(), home_subdir("mlartifacts")


class _Stop(Exception):
    """Raised from the signal handler to leave the wait loop."""


def run_until_signalled(servers: list[Server]) -> int:
    """Block until SIGINT/SIGTERM (-> 0) or until a server dies (-> 1); stop every server either way."""

    def handler(signum, frame):
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        while True:
            dead = [s for s in servers if not s.running()]
            if dead:
                s = dead[0]
                print(f"tickerflow: {s.name} exited with code {s.process.returncode}; log {s.log_path}:\n{s.log_tail(1500)}", file=sys.stderr)
                code = 1
                break
            time.sleep(0.5)  # a supervisor's poll; the signal handler interrupts it at once
    except _Stop as stop:
        print(f"tickerflow: {stop}: stopping {', '.join(s.name for s in servers)}", flush=True)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        stop_all(servers)
    return code


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


def cmd_ui(args: argparse.Namespace) -> int:
    from tickerflow.tasks.storage import home_subdir

    backend, artifacts = embedded_mlflow_store()
    if backend.startswith(("http://", "https://")):
        from tickerflow.tasks.redaction import redact_uri

        print(f"tickerflow ui: MLFLOW_TRACKING_URI points at a tracking server ({redact_uri(backend)}); open its UI there. "
              "Unset it to browse the local store.", file=sys.stderr)
        return EXIT_NOT_STARTED
    if not is_loopback(args.host):
        print(
            f"tickerflow ui: warning: binding to {args.host}: the Prefect and MLflow servers have no authentication; "
            "anyone who can reach this address can read and change runs, models and deployments. "
            "Put them behind an authenticating proxy, or keep the default loopback address.",
            file=sys.stderr, flush=True,
        )
    artifacts.mkdir(parents=True, exist_ok=True)
    log_dir = home_subdir("logs")
    # The UI's own API calls must reach this server, not a PREFECT_API_URL set for something else.
    prefect = prefect_server(args.host, args.prefect_port, log_dir, env={"PREFECT_API_URL": None, "PREFECT_UI_API_URL": None})
    mlflow_srv = mlflow_server(args.host, args.mlflow_port, backend, artifacts, log_dir)
    servers: list[Server] = []
    try:
        for server in (prefect, mlflow_srv):
            servers.append(server.start())
        for server in servers:
            server.wait_healthy(args.startup_timeout)
    except (ServerError, OSError, KeyboardInterrupt) as exc:
        stop_all(servers)
        if isinstance(exc, KeyboardInterrupt):
            return 130
        print(f"tickerflow ui: {exc}", file=sys.stderr)
        return EXIT_NOT_STARTED
    print(f"Prefect UI: {prefect.url}", flush=True)
    print(f"MLflow UI:  {mlflow_srv.url}", flush=True)
    print(f"(MLflow store {backend}, artifacts {artifacts}; logs in {log_dir}). Ctrl-C stops both.", flush=True)
    return run_until_signalled(servers)


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


def configured_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


NO_SCHEDULER = (
    "tickerflow serve: PREFECT_API_URL is not set. Prefect's ephemeral API runs no scheduler, so the "
    "deployments' schedules would never fire."
)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        overrides = json.loads(args.params) if args.params else {}
    except ValueError as exc:
        raise ConfigError(f"--params must be a JSON object, got {args.params!r}: {exc}") from exc
    if not isinstance(overrides, dict):
        raise ConfigError(f"--params must be a JSON object, got {args.params!r}")
    if args.interval is not None and args.interval <= 0:
        raise ConfigError(f"--interval must be a positive number of seconds, got {args.interval}")
    specs = load_deployment_specs(Path(args.file), args.only)
    server: Server | None = None
    api_url = configured_api_url()
    if not api_url:
        if args.no_server:
            print(
                f"{NO_SCHEDULER}\nStart a server (`prefect server start --host {LOOPBACK} --port {PREFECT_PORT}`), "
                f"then `export PREFECT_API_URL=http://{LOOPBACK}:{PREFECT_PORT}/api` and run `tickerflow serve` again.",
                file=sys.stderr,
            )
            return EXIT_NOT_STARTED
        from tickerflow.tasks.storage import home_subdir

        server = prefect_server(LOOPBACK, args.prefect_port, home_subdir("logs"), env={"PREFECT_API_URL": None})
        print(f"{NO_SCHEDULER}\nStarting a local Prefect server at {server.url} (log {server.log_path}) ...", flush=True)
        try:
            server.start().wait_healthy(args.startup_timeout)
        except ServerError as exc:
            server.stop()
            print(f"tickerflow serve: {exc}", file=sys.stderr)
            return EXIT_NOT_STARTED
        api_url = f"{server.url}/api"
        print(f"Prefect UI: {server.url}", flush=True)
    try:
        return serve_deployments(specs, api_url, args.interval, overrides)
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


# --- argument parsing -----------------------------------------------------------------------------


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add `serve` and `ui` to the `tickerflow` command line."""
    serve = subparsers.add_parser("serve", help="run the deployments of prefect.yaml on their schedules, in this process")
    serve.add_argument("--file", default=str(DEPLOYMENTS_FILE), help="prefect.yaml to read (default: the project's)")
    serve.add_argument("--only", action="append", metavar="NAME", help="serve only this deployment (repeatable)")
    serve.add_argument("--interval", type=float, help="run every N seconds instead of the cron schedules (to try it out)")
    serve.add_argument("--params", help='JSON merged into every deployment\'s parameters, e.g. \'{"config": {"train": {"epochs": 2}}}\'')
    serve.add_argument("--no-server", action="store_true", help="without PREFECT_API_URL, explain and exit instead of starting a local server")
    serve.add_argument("--prefect-port", type=int, default=PREFECT_PORT, help="port of the local server started without PREFECT_API_URL")
    serve.add_argument("--startup-timeout", type=float, default=STARTUP_SECONDS, help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    ui = subparsers.add_parser("ui", help="Prefect UI + MLflow UI on loopback, over the stores the runs used")
    ui.add_argument("--host", default=LOOPBACK, help="address to bind both servers to (default: loopback only)")
    ui.add_argument("--prefect-port", type=int, default=PREFECT_PORT)
    ui.add_argument("--mlflow-port", type=int, default=MLFLOW_PORT)
    ui.add_argument("--startup-timeout", type=float, default=STARTUP_SECONDS, help=argparse.SUPPRESS)
    ui.set_defaults(func=cmd_ui)
