"""Features, scaling and sliding windows: the numeric core shared by training and serving.

The network never sees price levels. It reads standardized daily log-returns and predicts the
cumulative log-return to each of the next `horizon` closes, in units of the training period's daily
volatility. A prediction of zero is exactly the naive "tomorrow = today" forecast, so the model only
has to learn deviations from it; predicting scaled levels is what makes tutorial GRUs lose to naive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


@dataclass(frozen=True)
class Scaler:
    """Per-feature standardization fit on training rows only; `target_scale` is the daily log-return std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def target_scale(self) -> float:
        return self.std[0]

    def transform(self, feats: np.ndarray) -> np.ndarray:
        return ((feats - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        return cls(mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]))


class ScalerAccumulator:
    """Streaming mean/std over feature rows, so the scaler can be fit one ticker at a time."""

    def __init__(self, n_features: int) -> None:
        self.n = 0
        self.sum = np.zeros(n_features)
        self.sumsq = np.zeros(n_features)

    def add(self, feats: np.ndarray) -> None:
        self.n += len(feats)
        self.sum += feats.sum(axis=0)
        self.sumsq += np.square(feats).sum(axis=0)

    def finish(self) -> Scaler:
        if self.n < 2:
            raise ValueError("cannot fit a scaler on fewer than 2 training rows")
        mean = self.sum / self.n
        var = np.maximum(self.sumsq / self.n - np.square(mean), 0.0)
        # A constant feature (e.g. a fixed high/low ratio) leaves only rounding in sumsq - n mean^2: a
        # spread below a millionth of the mean is that rounding, and dividing by it would blow noise up.
        spread = np.sqrt(var)
        std = np.where(spread > np.maximum(1e-6 * np.abs(mean), 1e-12), spread, 1.0)
        return Scaler(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))


def fit_scaler(train_feats: np.ndarray) -> Scaler:
    acc = ScalerAccumulator(train_feats.shape[1])
    acc.add(train_feats)
    return acc.finish()


def make_windows(
    prices: np.ndarray, scaled_feats: np.ndarray, lookback: int, horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All complete windows of one ticker, as strided views (no Python loop per window).

    Window i has its last input on day t = i + lookback. Returns x (N, L, F) over days t-L+1..t,
    y (N, H) with y[:, k-1] = log(p[t+k] / p[t]) (unscaled), and base_index (N,) = t.
    """
    n = len(prices) - lookback - horizon
    if n <= 0:
        empty = np.empty((0, lookback, scaled_feats.shape[1]), np.float32)
        return empty, np.empty((0, horizon)), np.empty(0, np.int64)
    x = sliding_window_view(scaled_feats, lookback, axis=0)[:n]  # (N, F, L)
    x = x.transpose(0, 2, 1)  # (N, L, F)
    logp = np.log(np.asarray(prices, dtype=np.float64))
    ahead = sliding_window_view(logp, horizon + 1)[lookback : lookback + n]  # (N, H+1): p[t..t+H]
    y = ahead[:, 1:] - ahead[:, :1]  # (N, H) cumulative log-returns
    base_index = np.arange(lookback, lookback + n)
    return x, y, base_index


def all_input_windows(scaled_feats: np.ndarray, lookback: int) -> np.ndarray:
    """Every complete input window, including the last one (no target needed). (T-1, F) -> (N, L, F)."""
    return sliding_window_view(scaled_feats, lookback, axis=0).transpose(0, 2, 1)
