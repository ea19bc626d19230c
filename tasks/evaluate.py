"""Evaluate: the model, the baselines and the current champion on the same test windows; the backtest.

The numerics are the core's (`tickerflow_model.evaluation`, `tickerflow_model.backtest`); these stages
load the champion, call the core and say what came out. What is recorded in MLflow and Prefect is
`tickerflow.reporting`'s business.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from prefect import task

from tickerflow.run_log import run_logger
from tickerflow.tracking.models import load_champion as load_registered_champion
from tickerflow_model.backtest import Backtest, walk_forward
from tickerflow_model.config import BacktestConfig
from tickerflow_model.evaluation import Champion, Evaluation, evaluate_forecaster
from tickerflow_model.forecaster import Forecaster


@task(name="load-champion")
def load_champion(model_name: str) -> Champion | None:
    """The registry's champion, loaded; None when there is none, its reason when it cannot be loaded."""
    return load_registered_champion(model_name)


@task(name="evaluate")
def evaluate(
    forecaster: Forecaster, dataset, prices: pd.DataFrame, champion: Champion | None, cpu_threads: int = 0
) -> Evaluation:
    """Score the forecaster on the test split; its network runs under `cpu_threads` (the training's cap)."""
    logger = run_logger()
    result = evaluate_forecaster(forecaster, dataset, prices, champion, cpu_threads)
    if result.champion_error:
        logger.warning("champion v%s is not compared: %s", result.champion_version, result.champion_error)
    for ticker, why in result.garch_fallbacks.items():
        logger.warning("garch baseline: %s gets the EWMA forecast: %s", ticker, why)
    m = result.metrics
    logger.info(
        "test split, %d forecasts: model RMSE %.4g vs naive %.4g (skill %+.4f)%s%s",
        result.n_windows,
        m["model"]["rmse"],
        m["naive"]["rmse"],
        result.skill,
        f"; pinball {m['model']['pinball']:.4f}" if "pinball" in m["model"] else "",
        f"; champion v{result.champion_version} RMSE {m['champion']['rmse']:.4g}" if "champion" in m else "",
    )
    return result


@task(name="backtest")
def backtest(
    prices: pd.DataFrame, window_config, train_config, config: BacktestConfig, source_hash: str
) -> Backtest | None:
    """Walk-forward folds (None when `config.folds` is 0); their windows live only as long as the stage."""
    if config.folds == 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return walk_forward(prices, window_config, train_config, config, source_hash, Path(tmp), run_logger())
