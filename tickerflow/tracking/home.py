"""Where tickerflow keeps its files: one home folder, and folders under it that are never data.

`TICKERFLOW_HOME` (default `~/.tickerflow`) holds raw snapshots, window datasets, checkpoints and,
unless `MLFLOW_TRACKING_URI` is set, the MLflow SQLite database and artifacts. How files are written
so a crash never leaves half of one is the core's (`tickerflow_model.atomic_io`).
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock

DEFAULT_HOME = "~/.tickerflow"


def tickerflow_home() -> Path:
    return Path(os.environ.get("TICKERFLOW_HOME", DEFAULT_HOME)).expanduser().resolve()


def home_subdir(*parts: str) -> Path:
    """A folder under the home; every part is a name we generated (hashes, fixed words), never data."""
    home = tickerflow_home()
    path = home.joinpath(*parts).resolve()
    if home != path and home not in path.parents:
        raise ValueError(f"refusing to use {path}: it is outside TICKERFLOW_HOME ({home})")
    return path


def home_lock(name: str, timeout: float = 600.0) -> FileLock:
    """An inter-process lock on `TICKERFLOW_HOME/.locks/NAME.lock`: processes that share this home (one machine)."""
    folder = home_subdir(".locks")
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / f"{name}.lock"), timeout=timeout)
