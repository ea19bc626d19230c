"""Shared fixtures: an isolated TICKERFLOW_HOME per test, a migrated MLflow store, a Prefect harness."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from price_frames import gjr_garch_returns, make_prices  # noqa: F401 - make_prices: also where older test modules found it
from tiny_models import EVAL_WINDOWS, MODEL, untrained_forecaster

from tickerflow.runtime import environment

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample" / "stocks_daily_2000_2013.csv.gz"

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
    from tickerflow_model.price_files import load_prices

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


def registered_champion(tmp_path_factory, migrated_mlflow_db, folder: str, build) -> SimpleNamespace:
    """A store of its own with one registered version holding the champion alias: `build(home)` returns
    the (prices, forecaster) to register, called with TICKERFLOW_HOME set to the store's home."""
    from tickerflow.tracking.models import log_version
    from tickerflow.tracking.store import experiment_id, use_tracking

    home = tmp_path_factory.mktemp(folder)
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TICKERFLOW_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        prices, forecaster = build(home)
        client = use_tracking()
        run_id = client.create_run(experiment_id(client)).info.run_id
        version = log_version(forecaster, prices, run_id, MODEL)
        client.set_registered_model_alias(MODEL, "champion", version)
        # MLflow exports the URIs it was pointed at; later tests must not inherit this store
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            os.environ.pop(name, None)
    return SimpleNamespace(
        uri=f"sqlite:///{home / 'mlflow.db'}", home=home, prices=prices, forecaster=forecaster, version=version
    )


@pytest.fixture(scope="module")
def champion(tmp_path_factory, migrated_mlflow_db) -> SimpleNamespace:
    """A store with one registered version (a tiny untrained GRU, horizon 3) holding the champion alias."""
    from tickerflow_model.config import WindowConfig
    from tickerflow_model.window_dataset import build_window_dataset

    def build(home):
        prices = make_prices(n_days=200, tickers=("AAA", "BBB"), seed=5)
        dataset = build_window_dataset(prices, WindowConfig(lookback=10, horizon=3, min_history=50), "s", home / "w")
        return prices, untrained_forecaster(dataset, 1.0, seed=11)

    return registered_champion(tmp_path_factory, migrated_mlflow_db, "champion-home", build)


@pytest.fixture(scope="module")
def garch_champion(tmp_path_factory, migrated_mlflow_db) -> SimpleNamespace:
    """A store whose champion is a registered garch baseline (horizon 3) fit on two tickers' 600 days."""
    import numpy as np

    from tickerflow_model.baselines import BaselineForecaster, fit_garch

    def build(home):
        prices = make_prices(n_days=600, tickers=("AAA", "BBB"), seed=8)
        # GARCH-like returns: the fit converges to a stationary model
        for seed, t in enumerate(("AAA", "BBB"), start=8):
            r = gjr_garch_returns(600, seed, omega=2e-6, alpha=0.1, beta=0.85, dof=6)
            prices.loc[prices["ticker"] == t, "close"] = 50 * np.exp(np.cumsum(r))
        histories = {t: g.sort_values("date")["close"].to_numpy() for t, g in prices.groupby("ticker")}
        fits = {t: fit_garch(p, 500) for t, p in histories.items()}
        return prices, BaselineForecaster.fit("garch", histories, {}, horizon=3, garch_fits=fits)

    return registered_champion(tmp_path_factory, migrated_mlflow_db, "garch-home", build)


@pytest.fixture
def prices() -> pd.DataFrame:
    """Two tickers, 200 days: what the evaluation tests score."""
    return make_prices(n_days=200, tickers=("AAA", "BBB"), seed=3)


@pytest.fixture
def dataset(prices, tmp_path):
    """`prices` windowed with EVAL_WINDOWS."""
    from tickerflow_model.window_dataset import build_window_dataset

    return build_window_dataset(prices, EVAL_WINDOWS, "src", tmp_path / "windows")
