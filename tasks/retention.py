"""Retention: what the home may forget, and `gc` that forgets it.

Kept: everything a registered model version, one of the last `keep_last_runs` training runs or a
running MLflow run names (its window dataset and raw snapshot), checkpoints of a live process, and
anything younger than `grace_minutes` (a flow that is running right now may not have recorded what
it uses yet). Removed otherwise: window datasets, raw snapshots, finished checkpoints (and those of
a dead process after `resumable_hours`), corrupt checkpoints, Data Docs folders beyond the newest `keep_last_runs`,
batch-forecast MLflow runs beyond the newest `keep_forecast_runs` (with their artifacts, on this filesystem
or in a tracking server's artifact store: `mlflow-artifacts:` through the server, `s3://` directly), forecast
store partitions older than `forecast_store_days`, server logs older than `log_max_age_days`, and
scratch folders (`.*.tmp-*`, `.*.old-*`) older than `scratch_max_age_minutes`.
"""

from __future__ import annotations

import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd
from prefect import task

from tickerflow.run_log import run_logger
from tickerflow.tasks.forecast_store import partitions, store_location
from tickerflow.tasks.train import OWNER_FILE, owner_is_alive, read_owner
from tickerflow.tracking.home import home_subdir, tickerflow_home
from tickerflow.tracking.models import find_versions
from tickerflow.tracking.registry import lineage
from tickerflow.tracking.runs import (
    artifacts_size,
    delete_artifacts,
    delete_runs,
    find_runs,
    is_local_artifact_uri,
    reap_stale_runs,
)
from tickerflow.tracking.store import EXPERIMENT, FORECAST_EXPERIMENT
from tickerflow_model.config import ForecastStoreConfig, RetentionConfig
from tickerflow_model.trainer import CHECKPOINT_FILE, CORRUPT_SUFFIX
from tickerflow_model.words import counted


@dataclass
class Removal:
    path: str  # a path of this filesystem or the forecast store; with `remote`, a run's artifact URI
    reason: str
    bytes: int
    remote: bool = False  # a run's artifacts in an artifact store MLflow reaches (mlflow-artifacts:, s3:, ...)


@dataclass
class GcPlan:
    removals: list[Removal] = field(default_factory=list)
    forecast_runs: list[str] = field(default_factory=list)  # MLflow run ids to delete
    kept: dict[str, str] = field(default_factory=dict)  # path -> why it stays (for --dry-run)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removals)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def age_seconds(path: Path, now: float) -> float:
    return now - path.stat().st_mtime


def needed_ids(keep_last_runs: int) -> dict[str, dict[str, str]]:
    """{"dataset_id": {id: why}, "source_hash": {hash: why}} named by versions, recent and running runs."""
    needed: dict[str, dict[str, str]] = {"dataset_id": {}, "source_hash": {}}
    for mv in find_versions():
        named = {"dataset_id": mv.tags.get("dataset_id"), "source_hash": lineage(mv.tags).get("source_hash")}
        for key, value in named.items():
            if value:
                needed[key].setdefault(value, f"model {mv.name} v{mv.version}")
    recent = find_runs(EXPERIMENT, newest_first=True, max_results=keep_last_runs)
    running = find_runs(EXPERIMENT, "attributes.status = 'RUNNING'")
    for run in [*recent, *running]:
        why = f"{'running' if run.status == 'RUNNING' else 'recent'} run {run.run_id}"
        for key in needed:
            if run.tags.get(key):
                needed[key].setdefault(run.tags[key], why)
    return needed


def plan_gc(
    config: RetentionConfig,
    store: ForecastStoreConfig,
    now: float | None = None,
    experiment: str = FORECAST_EXPERIMENT,
) -> GcPlan:
    """What `gc` would remove, and why each thing it keeps stays; the batch-forecast runs it reads are those of
    `experiment` (a replay's own, or the forecasts'). Removes nothing."""
    planner = GcPlanner(config, time.time() if now is None else now)
    planner.home_data(needed_ids(config.keep_last_runs))
    planner.checkpoints()
    planner.data_docs()
    planner.logs_and_scratch()
    planner.store_partitions(store)
    planner.forecast_runs(experiment)
    return planner.plan


@dataclass
class GcPlanner:
    """Walks the home and the forecast experiment, adding each thing to the plan as kept (and why) or removed."""

    config: RetentionConfig
    now: float
    plan: GcPlan = field(default_factory=GcPlan)

    def remove(self, path: Path | str, why: str, size: int | None = None) -> None:
        self.plan.removals.append(Removal(str(path), why, size_of(Path(path)) if size is None else size))

    def consider(self, path: Path, keep_why: str | None, remove_why: str) -> None:
        """Kept for `keep_why`, or while younger than the grace period (a running flow may not have recorded it)."""
        if keep_why is None and age_seconds(path, self.now) < self.config.grace_minutes * 60:
            keep_why = f"younger than {self.config.grace_minutes:g} minutes"
        if keep_why:
            self.plan.kept[str(path)] = keep_why
        else:
            self.remove(path, remove_why)

    def home_data(self, needed: dict[str, dict[str, str]]) -> None:
        """Window datasets and raw snapshots that no version, recent run or running run names."""
        for kind, folder, key in (("window dataset", "windows", "dataset_id"), ("raw snapshot", "raw", "source_hash")):
            root = home_subdir(folder)
            for path in sorted(root.iterdir()) if root.is_dir() else []:
                if path.is_dir() and not path.name.startswith("."):
                    self.consider(path, needed[key].get(path.name), f"{kind} no version or recent run uses")

    def checkpoints(self) -> None:
        """Finished checkpoints, a dead process's after `resumable_hours`, and corrupt checkpoint files."""
        config, root = self.config, home_subdir("checkpoints")
        for path in sorted(root.iterdir()) if root.is_dir() else []:
            if not path.is_dir() or path.name.startswith("."):
                continue
            owner = read_owner(path)
            if owner is None:
                self.consider(path, None, "finished checkpoint")
            elif owner_is_alive(owner):
                self.plan.kept[str(path)] = f"owned by live process {owner.get('pid')} on {owner.get('host')}"
            elif age_seconds(path / OWNER_FILE, self.now) < config.resumable_hours * 3600:
                self.plan.kept[str(path)] = f"resumable for {config.resumable_hours:g} h after its process ended"
            else:
                self.consider(
                    path, None, f"unfinished checkpoint of a process gone for over {config.resumable_hours:g} h"
                )
            if not (self.plan.removals and self.plan.removals[-1].path == str(path)):  # unless the whole folder goes
                self.corrupt_checkpoints(path)

    def corrupt_checkpoints(self, folder: Path) -> None:
        """A checkpoint that cannot be read never resumes anything: the ones a run set aside, and one that is
        not even a torch archive (writes are atomic, so a live run's checkpoint is always whole)."""
        current = folder / CHECKPOINT_FILE
        broken = sorted(folder.glob(f"{CHECKPOINT_FILE}{CORRUPT_SUFFIX}*"))
        broken += [current] if current.is_file() and not zipfile.is_zipfile(current) else []
        for file in broken:
            self.remove(file, "corrupt checkpoint")

    def data_docs(self) -> None:
        root = home_subdir("validation")
        folders = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
        for i, path in enumerate(sorted(folders, key=lambda p: p.stat().st_mtime, reverse=True)):
            recent = "recent validation" if i < self.config.keep_last_runs else None
            self.consider(path, recent, "Data Docs of an older validation")

    def logs_and_scratch(self) -> None:
        config, root = self.config, home_subdir("logs")
        for path in sorted(root.glob("*")) if root.is_dir() else []:
            if path.is_file() and age_seconds(path, self.now) > config.log_max_age_days * 86400:
                self.remove(path, f"log older than {config.log_max_age_days:g} days")
        for pattern in (".*.tmp-*", ".*.old-*"):
            for path in tickerflow_home().rglob(pattern):
                if age_seconds(path, self.now) > config.scratch_max_age_minutes * 60:
                    self.remove(path, "scratch left by an interrupted write")

    def store_partitions(self, store: ForecastStoreConfig) -> None:
        fs, _ = store_location(store)
        parts = partitions(store)
        days = self.config.forecast_store_days
        cutoff = parts[-1][0] - pd.Timedelta(days=days) if parts else None
        for day, folder in parts:
            if cutoff is not None and day < cutoff:
                size = sum(fs.size(f) for f in fs.find(folder))
                self.remove(folder, f"forecast store partition older than {days} days", size)

    def forecast_runs(self, experiment: str = FORECAST_EXPERIMENT) -> None:
        """Batch-forecast MLflow runs of `experiment` beyond the newest `keep_forecast_runs`, with their artifacts."""
        for run in find_runs(experiment, newest_first=True)[self.config.keep_forecast_runs :]:
            if run.status == "RUNNING":
                continue
            self.plan.forecast_runs.append(run.run_id)
            why = f"artifacts of batch-forecast run {run.run_id}"
            artifacts = local_artifact_dir(run.artifact_uri)
            if artifacts is not None and artifacts.exists():
                self.remove(artifacts, why)
            elif artifacts is None:  # a tracking server's store: deleting the run alone would leave its files
                self.plan.removals.append(Removal(run.artifact_uri, why, artifacts_size(run.artifact_uri), True))


def local_artifact_dir(artifact_uri: str) -> Path | None:
    """A run's artifact folder when it is on this filesystem (its run folder: `.../<run_id>/artifacts`)."""
    if not is_local_artifact_uri(artifact_uri):
        return None
    return Path(url2pathname(urlparse(artifact_uri).path)).parent


def execute_gc(plan: GcPlan, store: ForecastStoreConfig) -> None:
    """Remove the plan's files, then delete its runs: a run whose files could not be removed is still there for
    the next gc to find."""
    fs, root = store_location(store)
    for removal in plan.removals:
        if removal.remote:
            delete_artifacts(removal.path)
            continue
        if removal.path.startswith(root):
            fs.rm(removal.path, recursive=True)
            continue
        path = Path(removal.path)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    delete_runs(plan.forecast_runs)


def run_gc(
    config: RetentionConfig, store: ForecastStoreConfig, dry_run: bool = False, experiment: str = FORECAST_EXPERIMENT
) -> GcPlan:
    """Plan, then (unless `dry_run`) remove. Stale RUNNING MLflow runs are ended first, so what they
    named is no longer protected by a run that will never finish."""
    if not dry_run:
        reap_stale_runs()
    plan = plan_gc(config, store, experiment=experiment)
    if not dry_run:
        execute_gc(plan, store)
    return plan


@dataclass(frozen=True)
class GcSummary:
    removed: int  # files and folders
    bytes: int
    forecast_runs_deleted: int


@task(name="gc")
def collect_garbage(
    config: RetentionConfig, store: ForecastStoreConfig, experiment: str = FORECAST_EXPERIMENT
) -> GcSummary:
    plan = run_gc(config, store, experiment=experiment)
    run_logger().info("gc removed %s, %.1f MB", counted(len(plan.removals), "item"), plan.bytes / 1e6)
    return GcSummary(len(plan.removals), plan.bytes, len(plan.forecast_runs))
