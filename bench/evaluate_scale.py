"""Evaluation at universe scale: time of each evaluation step and the MLflow metric keys, per number of tickers.

On synthetic random-walk tickers (N tickers x D business days, lookback 60, horizon 1) with an
untrained GRU (the network's cost is the same trained or not), it times:

  (a) predict: the model's test-split quantiles plus the point and distribution baselines per ticker;
  (b) score: every metric for every forecaster, overall, per ticker and per horizon step (one grouped mean);
  (c) reports: tables, the test predictions, the overview plot and the fan charts;

and counts the metric keys the MLflow run would get and the plots. Usage:

    python bench/evaluate_scale.py [--tickers 50 400] [--days 2500] [--threads 1]

`--threads` sets torch's threads for inference (1 by default: on a busy 2-core box, threads that
meet at a barrier after each GRU step cost far more than they give; see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "models")]

from tickerflow.reporting.evaluation import mlflow_metrics, write_reports  # noqa: E402
from tickerflow_model.config import GRUConfig, WindowConfig  # noqa: E402
from tickerflow_model.evaluation import (  # noqa: E402
    evaluate_forecaster,
    metric_tables,
    predict_test_split,
    usable_baselines,
)
from tickerflow_model.forecaster import Forecaster, ModelSpec  # noqa: E402
from tickerflow_model.gru import GRUForecaster  # noqa: E402
from tickerflow_model.window_dataset import build_window_dataset  # noqa: E402


def random_walk(n_tickers: int, n_days: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2000-01-03", periods=n_days)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_tickers, n_days)), axis=1))  # (N, D)
    return pd.DataFrame(
        {
            "date": np.tile(dates, n_tickers),
            "ticker": np.repeat([f"T{i:04d}" for i in range(n_tickers)], n_days),
            "open": close.ravel(),
            "high": close.ravel() * 1.01,
            "low": close.ravel() * 0.99,
            "close": close.ravel(),
            "volume": 1e6,
        }
    )


def untrained(dataset) -> Forecaster:
    torch.manual_seed(0)
    spec = dataset.spec
    gru = GRUConfig(input_size=spec.n_features, hidden_size=64, num_layers=2, horizon=spec.horizon)
    return Forecaster(
        ModelSpec(spec, gru, dataset.scaler, dataset.price_column, (1.0,) * spec.horizon), GRUForecaster(gru)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, nargs="+", default=[50, 400])
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{'tickers':>8} {'rows':>10} {'test fcst':>10} {'predict s':>10} {'score s':>8} {'reports s':>10} {'keys':>5} {'plots':>6}"
    )
    for n in args.tickers:
        prices = random_walk(n, args.days)
        with tempfile.TemporaryDirectory() as tmp:
            dataset = build_window_dataset(prices, WindowConfig(), "bench", Path(tmp) / "w")
            forecaster = untrained(dataset)
            t0 = time.perf_counter()
            predictions, quantiles, _ = predict_test_split(forecaster, dataset, prices)
            t1 = time.perf_counter()
            names = ["model"] + usable_baselines(predictions, quantiles)
            metric_tables(
                predictions, names, {k: v for k, v in quantiles.items() if k in names}, forecaster.spec.quantiles
            )
            t2 = time.perf_counter()
            result = evaluate_forecaster(forecaster, dataset, prices)
            t3 = time.perf_counter()
            plots = write_reports(result, Path(tmp) / "report")
            t4 = time.perf_counter()
        print(
            f"{n:>8} {n * args.days:>10} {result.n_windows:>10} {t1 - t0:>10.2f} {t2 - t1:>8.2f} {t4 - t3:>10.2f} "
            f"{len(mlflow_metrics(result)):>5} {len(plots):>6}"
        )


if __name__ == "__main__":
    main()
