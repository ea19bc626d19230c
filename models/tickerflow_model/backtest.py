"""Walk-forward backtest: per fold, truncate the prices, window, train and evaluate; pool the forecasts.

Each fold trains on an expanding history (train + validation, split as the window config says) that
ends `step` trading days before the fold's last day; windows, scaler and model are rebuilt from that
history alone, so nothing after a fold's cutoff reaches its model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic_io import stable_hash
from .config import BacktestConfig, WindowConfig
from .evaluation import POINT_BASELINES, Evaluation, evaluate_forecaster, metric_tables
from .fitting import fit_forecaster
from .forecaster import Forecaster
from .window_dataset import build_window_dataset


@dataclass(frozen=True)
class Fold:
    index: int
    cutoff: pd.Timestamp  # last day any part of this fold's model, scaler or windows may see
    test_end: pd.Timestamp
    evaluation: Evaluation
    forecaster: Forecaster = field(repr=False)


@dataclass(frozen=True)
class Backtest:
    folds: list[Fold]
    metrics: dict[str, dict[str, float]]  # pooled over every fold's test forecasts
    per_ticker: dict[str, dict[str, dict[str, float]]]

    def fold_rows(self) -> list[dict]:
        return [
            {
                "fold": f.index,
                "cutoff": str(f.cutoff.date()),
                "test_end": str(f.test_end.date()),
                "forecasts": f.evaluation.n_windows,
                **{f"{n}_rmse": m["rmse"] for n, m in f.evaluation.metrics.items()},
                "skill": f.evaluation.skill,
            }
            for f in self.folds
        ]


def fold_window_config(base: WindowConfig, n_days: int, history_days: int):
    """The window config that cuts `n_days` trading days so validation ends on day `history_days`.

    Train and validation keep the base config's proportions inside the history; the half-day
    offsets make `int(n_days * fraction)` land exactly on the wanted day counts.
    """
    n_val = max(round(history_days * base.val_fraction / (base.train_fraction + base.val_fraction)), 1)
    n_train = history_days - n_val
    return base.updated(train_fraction=(n_train + 0.5) / n_days, val_fraction=(n_val + 0.5) / n_days)


def fold_periods(days: np.ndarray, config: BacktestConfig) -> list[tuple[int, int]]:
    """(last history day index, last test day index) per fold, oldest first."""
    last = len(days) - 1
    periods = [
        (last - (config.folds - k) * config.step, last - (config.folds - 1 - k) * config.step)
        for k in range(config.folds)
    ]
    if periods and periods[0][0] < 1:
        raise ValueError(
            f"{config.folds} folds of {config.step} days need more than {config.folds * config.step} trading days, "
            f"the data has {len(days)}"
        )
    return periods


def walk_forward(
    prices: pd.DataFrame,
    window_config: WindowConfig,
    train_config,
    config: BacktestConfig,
    source_hash: str,
    root: Path,
    log,
) -> Backtest:
    """Per fold, truncate, window (under `root`), train, evaluate; pool the forecasts. `log`: a logger."""
    days = np.unique(prices["date"].to_numpy("datetime64[ns]"))
    folds = []
    for k, (cut_idx, end_idx) in enumerate(fold_periods(days, config)):
        # nothing after the fold's last test day exists for this fold; nothing after `cutoff` is trained on
        seen = prices[prices["date"] <= days[end_idx]]
        fold_config = fold_window_config(window_config, end_idx + 1, cut_idx + 1)
        fold_hash = stable_hash({"source": source_hash, "until": str(days[end_idx])})
        dataset = build_window_dataset(seen, fold_config, fold_hash, root)
        forecaster = fit_forecaster(dataset, train_config).forecaster
        evaluation = evaluate_forecaster(forecaster, dataset, seen, cpu_threads=train_config.cpu_threads)
        log.info(
            "fold %d: history to %s, test to %s: skill vs naive %+.4f over %d forecasts",
            k,
            str(days[cut_idx])[:10],
            str(days[end_idx])[:10],
            evaluation.skill,
            evaluation.n_windows,
        )
        folds.append(Fold(k, pd.Timestamp(days[cut_idx]), pd.Timestamp(days[end_idx]), evaluation, forecaster))
    pooled = pd.concat([f.evaluation.predictions.assign(fold=f.index) for f in folds], ignore_index=True)
    names = [n for n in ("model", *POINT_BASELINES) if all(n in f.evaluation.metrics for f in folds)]
    overall, per_ticker, _ = metric_tables(pooled, names)
    return Backtest(folds, overall, per_ticker)
