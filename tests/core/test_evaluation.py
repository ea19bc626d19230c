"""Evaluation (core): baselines on the same windows, grouped scores, the walk-forward backtest, the AR(2) bar."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from price_frames import make_prices
from tiny_models import BACKTEST, EVAL_WINDOWS, TINY_TRAIN, untrained_forecaster

from tickerflow_model.backtest import walk_forward
from tickerflow_model.baselines import DISTRIBUTION_BASELINES, ewma, rolling_quantile, static_quantile
from tickerflow_model.config import BacktestConfig, TrainConfig, WindowConfig
from tickerflow_model.evaluation import evaluate_forecaster, predict_test_split
from tickerflow_model.fitting import fit_forecaster
from tickerflow_model.metrics import distribution_metrics
from tickerflow_model.window_dataset import build_window_dataset

CONFIG = EVAL_WINDOWS


def run_walk_forward(prices, source_hash, root):
    log = logging.getLogger("test-backtest")
    return walk_forward(prices, WindowConfig(lookback=10, min_history=50), TINY_TRAIN, BACKTEST, source_hash, root, log)


# ---- quality bar: a learnable AR(2) in the log-returns --------------------------------------------------
AR2_PHI = (0.5, -0.3)
AR2_SIGMA = 0.01


def ar2_prices(n_days: int, tickers=("AR1", "AR2", "AR3"), seed: int = 0) -> pd.DataFrame:
    """Prices whose daily log-returns follow r[t] = 0.5 r[t-1] - 0.3 r[t-2] + N(0, 0.01^2)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, ticker in enumerate(tickers):
        eps = rng.normal(0.0, AR2_SIGMA, n_days + 50)
        r = np.zeros_like(eps)
        for t in range(2, len(r)):
            r[t] = AR2_PHI[0] * r[t - 1] + AR2_PHI[1] * r[t - 2] + eps[t]
        close = 50.0 * (i + 1) * np.exp(np.cumsum(r[50:]))  # 50 days of burn-in dropped
        frame = make_prices(n_days, (ticker,), seed=seed + i)
        frames.append(frame.assign(open=close, high=close * 1.01, low=close * 0.99, close=close))
    return pd.concat(frames, ignore_index=True)


def ar2_oracle(predictions: pd.DataFrame, prices: pd.DataFrame) -> np.ndarray:
    """The conditional mean of the next close given the two last returns (horizon 1)."""
    out = np.empty(len(predictions))
    for ticker, g in prices.groupby("ticker"):
        g = g.sort_values("date")
        logp = np.log(g["close"].to_numpy())
        t = np.searchsorted(
            g["date"].to_numpy(), predictions.loc[predictions["ticker"] == ticker, "base_date"].to_numpy()
        )
        mean_return = AR2_PHI[0] * (logp[t] - logp[t - 1]) + AR2_PHI[1] * (logp[t - 1] - logp[t - 2])
        out[(predictions["ticker"] == ticker).to_numpy()] = np.exp(logp[t] + mean_return + AR2_SIGMA**2 / 2)
    return out


def ar2_gap_closed(n_days: int, train_config: TrainConfig, root: Path, seed: int = 0) -> dict[str, float]:
    """Train on AR(2) prices; -> RMSE of naive, model and oracle on the test split and the share of the gap closed."""
    prices = ar2_prices(n_days, seed=seed)
    dataset = build_window_dataset(prices, WindowConfig(lookback=20, min_history=100), f"ar2-{seed}", root)
    forecaster = fit_forecaster(dataset, train_config).forecaster
    preds = evaluate_forecaster(forecaster, dataset, prices).predictions
    rmse = {
        n: float(np.sqrt(np.mean((preds[c] - preds["actual"]) ** 2)))
        for n, c in (("naive", "naive"), ("model", "forecast"))
    }
    rmse["oracle"] = float(np.sqrt(np.mean((ar2_oracle(preds, prices) - preds["actual"]) ** 2)))
    rmse["gap_closed"] = (rmse["naive"] - rmse["model"]) / (rmse["naive"] - rmse["oracle"])
    return rmse


def test_baselines_and_actuals_come_from_the_prices_around_each_window(prices, dataset):
    forecaster = untrained_forecaster(dataset, 1.0)
    preds, quantiles, _ = predict_test_split(forecaster, dataset, prices)

    n_test = dataset.manifest["counts"]["test"]
    assert len(preds) == n_test * CONFIG.horizon
    for ticker, g in prices.groupby("ticker"):
        p = g.sort_values("date")["close"].to_numpy()
        dates = g.sort_values("date")["date"].to_numpy()
        rows = preds[preds["ticker"] == ticker]
        for row in rows.sample(10, random_state=0).itertuples():
            t = int(np.flatnonzero(dates == row.base_date.to_datetime64())[0])
            h = row.horizon
            assert row.actual == pytest.approx(p[t + h])
            assert row.target_date == dates[t + h]
            assert row.naive == pytest.approx(p[t])
            assert row.seasonal_naive == pytest.approx(p[t + h - 5])
            assert row.drift == pytest.approx(p[t] + h * (p[t] - p[0]) / t)
        # MASE's scale: the in-sample naive MAE over this ticker's training period (70% of 200 rows)
        assert rows["mase_scale"].iloc[0] == pytest.approx(np.mean(np.abs(np.diff(p[:140]))))
        # the test split lies after the training period
        assert rows["base_date"].min() > dates[139]
        # the distribution baselines: the same quantiles as the core functions give for these base days
        where = np.flatnonzero((preds["ticker"] == ticker).to_numpy())
        base = np.searchsorted(dates, rows["base_date"].to_numpy()[:: CONFIG.horizon])
        levels = forecaster.spec.quantiles
        for name, q in (
            ("static_quantile", static_quantile(p, base, 2, levels, fit_end=139)),
            ("rolling_quantile", rolling_quantile(p, base, 2, levels)),
            ("ewma", ewma(p, base, 2, levels)),
        ):
            np.testing.assert_allclose(quantiles[name][where], q.reshape(-1, len(levels)))
    # the model's quantiles are the forecaster's own, row for row
    x_quantiles = forecaster.predict_quantiles(
        __import__("tickerflow_model.window_dataset", fromlist=["read_split"]).read_split(dataset, "test")[0]
    )
    np.testing.assert_allclose(quantiles["model"], x_quantiles.reshape(-1, x_quantiles.shape[-1]))


def test_a_model_that_never_moves_scores_exactly_like_naive(prices, dataset):
    result = evaluate_forecaster(untrained_forecaster(dataset, 0.0), dataset, prices)

    assert list(result.metrics) == ["model", "naive", "seasonal_naive", "drift", *DISTRIBUTION_BASELINES, "blend"]
    assert result.skill == pytest.approx(0.0)
    for key in ("rmse", "mae", "mape", "smape", "mase"):
        assert result.metrics["model"][key] == pytest.approx(result.metrics["naive"][key])
    assert set(result.per_horizon) == {"h1", "h2"}
    assert set(result.per_ticker) == {"AAA", "BBB"}
    point = {"rmse", "mae", "mape", "smape", "mase", "directional_accuracy", "skill"}
    distribution = {"pinball", *(f"{s}_{c}" for s in ("coverage", "width", "winkler") for c in (80, 90, 95, 98))}
    for block in [result.metrics, *result.per_horizon.values(), *result.per_ticker.values()]:
        for name, m in block.items():
            assert set(m) == (point if name in ("naive", "seasonal_naive", "drift") else point | distribution), name
    # a distribution baseline's point forecast is the last price
    assert result.metrics["ewma"]["rmse"] == pytest.approx(result.metrics["naive"]["rmse"])
    # a random walk's one-step errors grow with the horizon
    assert result.per_horizon["h2"]["naive"]["rmse"] > result.per_horizon["h1"]["naive"]["rmse"]
    # skill vs naive is 1 - RMSE ratio wherever the metrics are
    drift = result.per_ticker["AAA"]["drift"]
    assert drift["skill"] == pytest.approx(1 - drift["rmse"] / result.per_ticker["AAA"]["naive"]["rmse"])


def test_grouped_scores_equal_each_group_scored_on_its_own(prices, dataset):
    result = evaluate_forecaster(untrained_forecaster(dataset, 1.0), dataset, prices)
    preds = result.predictions
    y = 100 * np.log(preds["actual"] / preds["base_price"]).to_numpy()
    for ticker, h in (("AAA", None), ("BBB", None), (None, 2)):
        rows = (preds["ticker"] == ticker).to_numpy() if ticker else (preds["horizon"] == h).to_numpy()
        block = result.per_ticker[ticker] if ticker else result.per_horizon[f"h{h}"]
        for name in ("model", "ewma", "static_quantile"):
            expected = distribution_metrics(100 * result.quantiles[name][rows], y[rows], result.levels)
            for key, value in expected.items():
                assert block[name][key] == pytest.approx(value), (ticker, h, name, key)
        err = preds.loc[rows, "drift"] - preds.loc[rows, "actual"]
        assert block["drift"]["rmse"] == pytest.approx(float(np.sqrt(np.mean(err**2))))
        assert block["drift"]["skill"] == pytest.approx(1 - block["drift"]["rmse"] / block["naive"]["rmse"])


def test_walk_forward_folds_expand_and_never_train_on_anything_after_their_cutoff(tmp_path):
    prices = make_prices(n_days=260, tickers=("AAA", "BBB"), seed=4)
    days = np.sort(prices["date"].unique())
    bt = run_walk_forward(prices, "orig", tmp_path / "a")

    assert [f.test_end for f in bt.folds] == [days[-31], days[-1]]
    assert [f.cutoff for f in bt.folds] == [days[-61], days[-31]]  # each fold's history ends where its test starts
    for fold in bt.folds:
        preds = fold.evaluation.predictions
        assert preds["base_date"].min() > fold.cutoff and preds["target_date"].max() <= fold.test_end
    assert bt.metrics["model"]["rmse"] > 0 and set(bt.per_ticker) == {"AAA", "BBB"}

    # Rewrite history after the first fold's cutoff with a violent trend: if anything after the
    # cutoff leaked into fold 0's scaler, windows or training, its model would change.
    tampered = prices.copy()
    after = tampered["date"] > bt.folds[0].cutoff
    boost = np.exp(0.2 * (tampered.loc[after].groupby("ticker").cumcount() + 1)).to_numpy()
    for col in ("open", "high", "low", "close"):
        tampered.loc[after, col] = tampered.loc[after, col].to_numpy() * boost
    leaky = run_walk_forward(tampered, "tampered", tmp_path / "b")

    same, other = bt.folds[0].forecaster, leaky.folds[0].forecaster
    assert same.spec == other.spec  # scaler, shrinkage, window and network config
    for name, tensor in same.net.state_dict().items():
        assert torch.equal(tensor, other.net.state_dict()[name]), name
    # ...while fold 1, whose history includes the rewritten days, does see them (the check has teeth)
    assert (
        leaky.folds[1].forecaster.spec != bt.folds[1].forecaster.spec
    )  # (its validation period: early stopping, shrinkage)


def test_backtest_config_and_too_short_history_are_named():
    with pytest.raises(ValueError, match="(?s)folds.*greater than or equal to 0"):
        BacktestConfig(folds=-1)
    with pytest.raises(ValueError, match="(?s)step.*greater than or equal to 2"):
        BacktestConfig(folds=1, step=1)
    with pytest.raises(ValueError, match="(?s)folds.*valid integer"):
        BacktestConfig(folds=True)  # a flag is not a number of folds
    with pytest.raises(ValueError, match="need more than 300 trading days, the data has 260"):
        walk_forward(
            make_prices(n_days=260),
            WindowConfig(),
            TINY_TRAIN,
            BacktestConfig(folds=10, step=30),
            "x",
            Path("unused"),
            logging.getLogger("t"),
        )  # fails before writing anything


@pytest.mark.slow
def test_the_model_closes_at_least_half_the_gap_between_naive_and_the_ar2_oracle(tmp_path):
    config = TrainConfig(
        epochs=8, gru={"hidden_size": 16, "num_layers": 1}, batch_size=128, lr=3e-3, seed=0, device="cpu"
    )
    result = ar2_gap_closed(1200, config, tmp_path / "w")

    assert result["oracle"] < result["naive"]  # the data has something to learn
    assert result["gap_closed"] >= 0.5, result
