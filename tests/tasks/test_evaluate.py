"""The evaluate stage: fair champion scoring from the registry, reports, and the MLflow/Prefect records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny_models import EVAL_WINDOWS, untrained_forecaster

from tickerflow.tracking.models import load_as_champion
from tickerflow.tracking.store import experiment_id, use_tracking
from tickerflow_model.config import history_days
from tickerflow_model.evaluation import evaluate_forecaster, predict_test_split

CONFIG = EVAL_WINDOWS


def register_champion(forecaster, prices, name: str) -> str:
    from tickerflow.tracking.models import log_version

    client = use_tracking()
    run_id = client.create_run(experiment_id(client)).info.run_id  # artifacts under the test's home
    log_version(forecaster, prices, run_id, name)
    return name


# ---- quality bar: a learnable AR(2) in the log-returns --------------------------------------------------
AR2_PHI = (0.5, -0.3)
AR2_SIGMA = 0.01


def test_the_champion_is_scored_on_the_same_windows_even_with_another_lookback(prices, dataset, mlflow_store):
    champion = untrained_forecaster(dataset, 1.0, seed=7, lookback=5)
    uri = register_champion(champion, prices, "fair")

    model = untrained_forecaster(dataset, 1.0)
    result = evaluate_forecaster(model, dataset, prices, load_as_champion(uri, "1"))

    assert "champion" in result.metrics and result.champion_error is None
    preds = result.predictions
    own = champion.forecast_frame(prices, all_dates=True).set_index(["ticker", "base_date", "horizon"])
    keys = pd.MultiIndex.from_frame(preds[["ticker", "base_date", "horizon"]])
    np.testing.assert_allclose(preds["champion"].to_numpy(), own["forecast_close"].reindex(keys).to_numpy(), rtol=1e-6)
    q50 = np.log(own["q50"].reindex(keys).to_numpy() / preds["base_price"].to_numpy())
    np.testing.assert_allclose(result.quantiles["champion"][:, result.levels.index(0.5)], q50, rtol=1e-6, atol=1e-12)
    assert result.metrics["champion"]["rmse"] != pytest.approx(result.metrics["model"]["rmse"])
    assert result.metrics["champion"]["pinball"] != pytest.approx(result.metrics["model"]["pinball"])


def test_a_champion_that_cannot_score_every_window_is_not_compared(prices, dataset, mlflow_store):
    first_test_base = predict_test_split(untrained_forecaster(dataset, 0.0), dataset, prices)[0]["base_date"].min()
    # a window and its long-memory history longer than the history before the first test day
    lookback = int((prices["date"].drop_duplicates() < first_test_base).sum()) + 3 - history_days(dataset.spec.features)
    uri = register_champion(untrained_forecaster(dataset, 1.0, lookback=lookback), prices, "long")

    result = evaluate_forecaster(untrained_forecaster(dataset, 1.0), dataset, prices, load_as_champion(uri, "1"))

    assert "champion" not in result.metrics and "champion" not in result.predictions
    assert "forecasts only" in result.champion_error


def test_a_champion_that_cannot_be_loaded_is_recorded_and_skipped(prices, dataset, mlflow_store, tf_home):
    uri = register_champion(untrained_forecaster(dataset, 1.0, seed=3), prices, "broken")
    (stored,) = tf_home.rglob("weights.pt")  # the registered version's weights in the artifact store
    stored.write_bytes(b"not a torch file")

    result = evaluate_forecaster(untrained_forecaster(dataset, 1.0), dataset, prices, load_as_champion(uri, "1"))

    assert "champion" not in result.metrics and result.skill is not None
    assert result.champion_error.startswith("could not be loaded or run ("), result.champion_error
    assert "\n" not in result.champion_error and len(result.champion_error) < 300


def test_a_champion_reading_columns_the_data_lacks_gets_one_line_naming_them(prices, dataset, mlflow_store, tmp_path):
    from tickerflow_model.window_dataset import build_window_dataset

    champion = untrained_forecaster(dataset, 1.0, seed=3)  # reads high, low and open besides the close
    reads = sorted(set(champion.spec.window.columns) - {"close"})
    assert reads
    uri = register_champion(champion, prices, "ohlc")
    close_only = prices[["date", "ticker", "close"]]
    closes = build_window_dataset(close_only, CONFIG, "closes", tmp_path / "w")

    result = evaluate_forecaster(untrained_forecaster(closes, 1.0), closes, close_only, load_as_champion(uri, "1"))

    assert result.champion_error == f"reads columns this data lacks: {', '.join(reads)}"
    assert "champion" not in result.metrics


def test_an_mlflow_schema_error_becomes_its_cause_without_the_frame():
    from tickerflow_model.errors import cause_line
    from tickerflow_model.evaluation import failure_reason

    frame = pd.DataFrame({"date": ["2013-01-02"] * 3, "ticker": ["AAPL"] * 3, "close": [1.0, 2.0, 3.0]})
    message = (
        f"Failed to enforce schema of data '{frame}' with schema '['date': string (required), ...]'. "
        "Error: Model is missing inputs ['high', 'low', 'open']."
    )
    assert cause_line(ValueError(message)) == "Model is missing inputs ['high', 'low', 'open']."
    reason = failure_reason(ValueError(message))
    assert reason == "could not be loaded or run (ValueError): Model is missing inputs ['high', 'low', 'open']."
    assert cause_line(OSError("x" * 500 + "\nsecond line")).endswith("...")
    assert len(cause_line(OSError("x" * 500))) == 200
