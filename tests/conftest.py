"""Shared fixtures: an isolated TICKERFLOW_HOME per test, a migrated MLflow store, a Prefect harness."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "stocks_daily_2000_2013.csv.gz"

from tickerflow import environment

# Before anything imports Prefect or MLflow: no telemetry, no network dry-runs.
environment.apply()
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(autouse=True)
def tf_home(tmp_path, monkeypatch) -> Path:
    """Every test writes under its own TICKERFLOW_HOME."""
    home = tmp_path / "tfhome"
    home.mkdir()
    monkeypatch.setenv("TICKERFLOW_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # mlflow.set_registry_uri exports this variable; a previous test's store must not leak in
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return home


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow SQLite store migrated once per session (migrations cost ~5 s each time)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(tf_home, migrated_mlflow_db) -> str:
    """A fresh, already-migrated MLflow store in this test's home; returns its URI."""
    shutil.copy(migrated_mlflow_db, tf_home / "mlflow.db")
    return f"sqlite:///{tf_home / 'mlflow.db'}"


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for flow tests (started once per session)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def sample_frame() -> pd.DataFrame:
    from tickerflow.tasks.ingest import load_prices

    frame, _, _ = load_prices(str(SAMPLE))
    return frame


@pytest.fixture
def small_sample_csv(tmp_path, sample_frame) -> Path:
    """A small slice of the real sample: the last 700 days of AAPL and MSFT, in the sample's own format."""
    raw = pd.read_csv(SAMPLE)
    raw = raw[raw["Ticker"].isin(["AAPL", "MSFT"])].groupby("Ticker").tail(700)
    path = tmp_path / "small.csv"
    raw.to_csv(path, index=False)
    return path


def make_prices(n_days: int = 400, tickers=("AAA", "BBB"), seed: int = 0) -> pd.DataFrame:
    """A canonical long frame of random-walk prices with consistent OHLCV."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=n_days)
    frames = []
    for i, t in enumerate(tickers):
        close = 50.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, 0.01, n_days)))
        frames.append(
            pd.DataFrame(
                {
                    "date": dates,
                    "ticker": t,
                    "open": close * 0.999,
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "volume": rng.integers(1_000, 10_000, n_days).astype(float),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out["ticker"] = out["ticker"].astype("string")
    return out
