"""Synthetic price frames for tests: random walks in the canonical long layout."""

from __future__ import annotations

import numpy as np
import pandas as pd


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


def staggered_prices() -> pd.DataFrame:
    """Three tickers; CCC starts late, so its history begins after the training period."""
    early = make_prices(600, tickers=("AAA", "BBB"))
    late = make_prices(600, tickers=("CCC",), seed=3)
    late = late[late["date"] >= early["date"].iloc[450]]
    return pd.concat([early, late], ignore_index=True)


def gjr_garch_returns(
    n: int,
    seed: int = 0,
    *,
    omega: float = 1e-6,
    alpha: float = 0.1,
    gamma: float = 0.0,
    beta: float = 0.88,
    mu: float = 0.0,
    dof: float | None = None,
    var0: float = 1e-4,
) -> np.ndarray:
    """n daily log returns of a GJR-GARCH(1,1): r = mu + sqrt(var) z, var' = omega + (alpha + gamma [r < 0]) r^2
    + beta var, with z Gaussian or Student-t(dof) scaled to unit variance."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n) if dof is None else rng.standard_t(dof, n) / np.sqrt(dof / (dof - 2))
    r, var = np.empty(n), var0
    for t in range(n):
        r[t] = mu + np.sqrt(var) * z[t]
        var = omega + (alpha + gamma * (r[t] < 0)) * r[t] ** 2 + beta * var
    return r
