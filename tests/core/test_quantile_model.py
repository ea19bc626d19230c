"""Behaviour of the trained quantile model on synthetic GARCH(1,1) returns (no Prefect, no MLflow):
calibrated coverage near nominal on held-out windows, and a pinball loss below static quantiles."""

from __future__ import annotations

import numpy as np
import pytest

from tickerflow_model.config import TrainConfig, WindowSpec
from tickerflow_model.features import compute_features
from tickerflow_model.forecaster import Forecaster, ModelSpec
from tickerflow_model.quantiles import QUANTILE_LEVELS, central_pairs
from tickerflow_model.trainer import fit_shrinkage, train_model
from tickerflow_model.windows import fit_scaler, make_windows

LOOKBACK = 20


def garch_returns(n: int, rng, omega=2e-6, alpha=0.10, beta=0.88) -> np.ndarray:
    """GARCH(1,1) daily log returns with Student-t(6) shocks: volatility clusters, fat tails."""
    r = np.empty(n)
    var = omega / (1 - alpha - beta)
    shocks = rng.standard_t(6, size=n) / np.sqrt(6 / 4)  # unit variance
    for t in range(n):
        r[t] = np.sqrt(var) * shocks[t]
        var = omega + alpha * r[t] ** 2 + beta * var
    return r


def pinball(q: np.ndarray, y: np.ndarray, levels) -> float:
    diff = y[..., None] - q  # (N, H, Q)
    tau = np.asarray(levels)
    return float(np.mean(np.maximum(tau * diff, (tau - 1) * diff)))


@pytest.fixture(scope="module")
def garch_split():
    """3 tickers x 1,600 days; chronological 60/20/20 split per ticker, targets inside their split."""
    rng = np.random.default_rng(11)
    spec = WindowSpec(lookback=LOOKBACK, horizon=1, features=("log_return", "abs_log_return"))
    series = [garch_returns(1600, rng) for _ in range(3)]
    n_train_days = 960
    scaler = fit_scaler(
        np.concatenate(
            [compute_features(100 * np.exp(np.cumsum(np.r_[0, r])), spec.features)[:n_train_days] for r in series]
        )
    )
    parts = {"train": [], "val": [], "test": []}
    static = []
    for r in series:
        prices = 100 * np.exp(np.cumsum(np.r_[0.0, r]))  # (T,)
        x, y, base = make_windows(prices, scaler.transform(compute_features(prices, spec.features)), LOOKBACK, 1)
        target_day = base + 1
        cuts = {
            "train": target_day <= n_train_days,
            "val": (target_day > n_train_days + 5) & (target_day <= 1280),
            "test": target_day > 1285,
        }
        for split, mask in cuts.items():
            parts[split].append((x[mask], y[mask]))
        # static quantiles of this ticker's training returns, for each of its test windows
        static.append(
            np.broadcast_to(
                np.quantile(r[:n_train_days], QUANTILE_LEVELS), (int(cuts["test"].sum()), 1, len(QUANTILE_LEVELS))
            )
        )
    out = {
        s: (np.concatenate([a for a, _ in v]).astype(np.float32), np.concatenate([b for _, b in v]))
        for s, v in parts.items()
    }
    return spec, scaler, out, np.concatenate(static)


def test_trained_model_is_calibrated_and_beats_static_quantiles_on_garch_returns(garch_split):
    spec, scaler, data, static_q = garch_split
    (x, y), (xv, yv), (xt, yt) = data["train"], data["val"], data["test"]
    scale = scaler.target_scale
    config = TrainConfig(
        epochs=6,
        batch_size=128,
        gru={"hidden_size": 16, "num_layers": 1},
        patience=6,
        seed=0,
        device="cpu",
        precision="fp32",
    )
    result = train_model(x, (y / scale).astype(np.float32), xv, (yv / scale).astype(np.float32), config)
    model_spec = ModelSpec(
        spec, result.net.config, scaler, "close", fit_shrinkage(result.net, xv, (yv / scale).astype(np.float32))
    )
    model = Forecaster(model_spec, result.net).calibrate(xv, (yv / scale).astype(np.float32))
    q = model.predict_quantiles(xt)  # (N, 1, Q) log returns
    assert (np.diff(q, axis=-1) >= 0).all()
    for lo, hi, nominal in central_pairs(QUANTILE_LEVELS):
        covered = float(np.mean((yt >= q[:, :, lo]) & (yt <= q[:, :, hi])))
        assert abs(covered - nominal) < 0.05, (nominal, covered)
    model_loss, static_loss = pinball(q, yt, QUANTILE_LEVELS), pinball(static_q, yt, QUANTILE_LEVELS)
    assert model_loss < 0.97 * static_loss, (model_loss, static_loss)
