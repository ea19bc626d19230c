"""The deployments of `deployments/prefect.yaml`, served in this process (`prefect.serve`): no work pool,
no worker. `tickerflow serve` reads them here and runs them on their schedules."""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from tickerflow_model.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]  # the project folder: tickerflow/runtime/ is two below it
DEPLOYMENTS_FILE = ROOT / "deployments" / "prefect.yaml"
# The project folder on a worker's machine: prefect.yaml's pull step names it as `{{ $TICKERFLOW_PROJECT_DIR }}`,
# which each worker resolves from its own environment when it pulls a flow run.
PROJECT_DIR_ENV = "TICKERFLOW_PROJECT_DIR"


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
            raise ConfigError(
                f"deployment {self.name!r}: entrypoint must be path/to/file.py:flow, got {self.entrypoint!r}"
            )

    @property
    def module(self) -> str:
        # flows/x.py is installed as tickerflow.flows.x: import it by that name, never as a top-level `flows`
        return "tickerflow." + self.entrypoint.split(":", 1)[0].removesuffix(".py").replace("/", ".")

    @property
    def flow_attribute(self) -> str:
        return self.entrypoint.split(":", 1)[1]


def load_deployment_specs(path: Path = DEPLOYMENTS_FILE, only: list[str] | None = None) -> list[DeploymentSpec]:
    """The deployments defined in prefect.yaml (all, or those named in `only`)."""
    document = yaml.safe_load(Path(path).read_text()) or {}
    specs = []
    for entry in document.get("deployments") or []:
        crons = tuple((s["cron"], s.get("timezone", "UTC")) for s in entry.get("schedules") or [] if "cron" in s)
        specs.append(
            DeploymentSpec(
                name=entry["name"],
                entrypoint=entry["entrypoint"],
                parameters=entry.get("parameters") or {},
                tags=tuple(entry.get("tags") or ()),
                description=entry.get("description", ""),
                crons=crons,
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
        out[key] = (
            merge_parameters(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def to_runner_deployment(spec: DeploymentSpec, interval: float | None, overrides: dict[str, Any]):
    from prefect.schedules import Cron, Interval  # (Prefect: only when serving; `--help` imports this module)

    flow = getattr(importlib.import_module(spec.module), spec.flow_attribute)
    if interval:
        # anchored now, so the first run is one interval away rather than at the next multiple since 2020
        schedules = [Interval(interval, anchor_date=datetime.now(timezone.utc))]
    else:
        schedules = [Cron(cron, timezone=tz) for cron, tz in spec.crons]
    from prefect.events import DeploymentTriggerTypes  # (Prefect: only when serving)

    triggers = [TypeAdapter(DeploymentTriggerTypes).validate_python(t) for t in spec.triggers]
    return flow.to_deployment(
        name=spec.name,
        triggers=triggers or None,
        parameters=merge_parameters(anchor_data_paths(spec.parameters), overrides),
        tags=list(spec.tags),
        description=spec.description,
        schedules=schedules,
    )


def serve_deployments(specs: list[DeploymentSpec], api_url: str, interval: float | None, overrides: dict) -> int:
    # Prefect: only when serving; `--help` imports this module
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
