"""Window stage: the core's window dataset (`tickerflow_model.window_dataset`) as Prefect tasks.

plan -> one mapped task per part (a few whole tickers; a Dask task runner can spread them) -> commit.
Every task is cached on the dataset id (a hash of the source hash and the window config) and the
home, so a rerun with unchanged input shows Cached; when the dataset folder is missing the caches
are refreshed instead of trusted. `build_window_dataset` runs the same three core functions in one
process, so both write the same bytes.
"""

from __future__ import annotations

import hashlib

import pandas as pd
from prefect import task, unmapped
from prefect.cache_policies import CachePolicy

from tickerflow.run_log import run_logger
from tickerflow.tracking.home import home_subdir, tickerflow_home
from tickerflow_model.config import WindowConfig
from tickerflow_model.window_dataset import (
    TickerRows,
    WindowDataset,
    WindowPlan,
    commit_window_dataset,
    dataset_id,
    load_window_dataset,
    part_groups,
    plan_window_dataset,
    write_part,
)
from tickerflow_model.words import counted


def _cache_key(task_ctx, params: dict) -> str:
    """Same dataset id, same home, same task (and part) -> same key; `window` refreshes it when the dataset is gone."""
    plan = params.get("plan")
    ds_id = plan.dataset_id if plan is not None else dataset_id(params["source_hash"], params["config"])
    home = hashlib.sha256(str(tickerflow_home()).encode()).hexdigest()[:12]
    return f"tickerflow-window-{ds_id}-{home}-{task_ctx.task.name}-{params.get('index', '')}"


# A policy rather than `cache_key_fn=`: tasks without one get NO_CACHE (tickerflow.runtime.environment).
WINDOW_CACHE = CachePolicy.from_cache_key_fn(_cache_key)


@task(name="window-plan", cache_policy=WINDOW_CACHE)
def plan_windows(frame: pd.DataFrame, config: WindowConfig, source_hash: str) -> WindowPlan:
    """Choose the price, cut the calendar, fit the scaler on training rows; open a scratch folder."""
    return plan_window_dataset(frame, config, source_hash, home_subdir("windows"))


@task(name="window-part", cache_policy=WINDOW_CACHE)
def write_window_part(group: list[TickerRows], index: int, plan: WindowPlan) -> list[dict]:
    """One mapped task: part `index` (a few whole tickers) of every split."""
    return write_part(group, index, plan)


@task(name="window-commit", cache_policy=WINDOW_CACHE)
def commit_windows(plan: WindowPlan, parts: list[list[dict]]) -> WindowDataset:
    """Manifest into the scratch folder, then one rename: the dataset appears complete or not at all."""
    dataset = commit_window_dataset(plan, parts)
    c, manifest = dataset.manifest["counts"], dataset.manifest
    run_logger().info(
        "window dataset %s: %d train / %d val / %d test windows over %s (price column %s, split %s) at %s",
        dataset.dataset_id,
        c["train"],
        c["val"],
        c["test"],
        counted(len(manifest["tickers"]), "ticker"),
        dataset.price_column,
        manifest["split_dates"],
        dataset.path,
    )
    return dataset


def window(frame: pd.DataFrame, config: WindowConfig, source_hash: str) -> WindowDataset:
    """The window stage inside a flow: plan, one mapped task per part, commit."""
    missing = load_window_dataset(home_subdir("windows", dataset_id(source_hash, config))) is None
    plan = plan_windows.with_options(refresh_cache=missing)(frame, config, source_hash)
    groups = part_groups(frame, plan)
    parts = write_window_part.with_options(refresh_cache=missing).map(groups, range(len(groups)), unmapped(plan))
    # Prefect resolves the futures to their lists before the task runs; its task signatures type only the values
    return commit_windows.with_options(refresh_cache=missing)(plan, parts)  # type: ignore[arg-type]
