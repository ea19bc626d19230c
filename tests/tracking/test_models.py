"""Logging a version: its signature takes every column the features read."""

from __future__ import annotations

import mlflow
from price_frames import make_prices
from tiny_models import untrained_forecaster

from tickerflow.tracking.store import experiment_id
from tickerflow_model.config import WindowConfig
from tickerflow_model.window_dataset import build_window_dataset


def test_the_signature_holds_every_column_the_features_read(mlflow_store, tmp_path):
    from tickerflow.tracking.models import log_version
    from tickerflow.tracking.store import use_tracking

    prices = make_prices(n_days=200, seed=1)
    features = ("log_return", "hl_range", "log_volume_change")
    dataset = build_window_dataset(
        prices, WindowConfig(lookback=10, min_history=50, features=features), "s", tmp_path / "w"
    )
    client = use_tracking()
    run_id = client.create_run(experiment_id(client)).info.run_id
    version = log_version(untrained_forecaster(dataset, 1.0), prices, run_id, "m")

    info = mlflow.models.get_model_info(f"models:/m/{version}")
    assert info.signature.inputs.input_names() == ["date", "ticker", "close", "high", "low", "volume"]
    out = mlflow.pyfunc.load_model(f"models:/m/{version}").predict(
        prices[["date", "ticker", "close", "high", "low", "volume"]]
    )
    assert sorted(out["ticker"].unique()) == ["AAA", "BBB"]
