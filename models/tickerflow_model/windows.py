"""Features, scaling and sliding windows: the numeric core shared by training and serving.

The network never sees price levels. It reads standardized daily log-returns and predicts the
cumulative log-return to each of the next `horizon` closes, in units of the training period's daily
volatility. A prediction of zero is exactly the naive "tomorrow = today" forecast, so the model only
has to learn deviations from it; predicting scaled levels is what makes tutorial GRUs lose to naive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field, field_validator

from .config import Config

Feature = Literal["log_return", "abs_log_return", "hl_range", "log_volume_change"]
FEATURES: tuple[str, ...] = get_args(Feature)
# Columns of the canonical frame each feature reads besides the price.
FEATURE_COLUMNS = {"log_return": (), "abs_log_return": (), "hl_range": ("high", "low"), "log_volume_change": ("volume",)}


class WindowSpec(Config):
    """What one window looks like; travels with every registered model."""

    lookback: int = Field(60, ge=2, description="Days of features each window reads.")
    horizon: int = Field(1, ge=1, description="Business days ahead the model forecasts (1..horizon).")
    features: tuple[Feature, ...] = Field(
        ("log_return",), min_length=1, description=f"Features per day; the first is log_return. Any of {FEATURES}."
    )

    @field_validator("features")
    @classmethod
    def _log_return_first(cls, features: tuple[str, ...]) -> tuple[str, ...]:
        # the target scale and the volatility standardization read feature 0 as the day's log return
        if features[0] != "log_return":
            raise ValueError(f"the first feature must be 'log_return', got {features}")
        return features

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns of the canonical frame, besides the price, that the features read."""
        return tuple(dict.fromkeys(c for f in self.features for c in FEATURE_COLUMNS[f]))

    @property
    def spec(self) -> "WindowSpec":
        """Just the window's shape (a subclass may carry more)."""
        return WindowSpec(lookback=self.lookback, horizon=self.horizon, features=self.features)

    def to_dict(self) -> dict:
        return {**self.model_dump(), "features": list(self.features)}

    @classmethod
    def from_dict(cls, d: dict) -> "WindowSpec":
        return cls(lookback=int(d["lookback"]), horizon=int(d["horizon"]), features=tuple(d["features"]))


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


def compute_features(
    prices: np.ndarray,
    volume: np.ndarray | None,
    features: tuple[str, ...],
    high: np.ndarray | None = None,
    low: np.ndarray | None = None,
) -> np.ndarray:
    """Row t holds the features of day t+1 (day 0 has no previous close). (T,) -> (T-1, F).

    Every feature of day t+1 is known at that day's close: a window ending on its base date reads
    nothing later.
    - log_return: log(p[t+1] / p[t]);
    - abs_log_return: its absolute value (the size of the move, whatever its sign: carries the spread);
    - hl_range: log(high / low) of day t+1, the day's range (a less noisy volatility estimate than
      one close-to-close return; a ratio within one day, so a split adjustment does not change it);
    - log_volume_change: log(1 + volume[t+1]) - log(1 + volume[t]).
    """
    prices = np.asarray(prices, dtype=np.float64)
    log_return = np.diff(np.log(prices))
    cols = []
    for name in features:
        if name == "log_return":
            cols.append(log_return)
        elif name == "abs_log_return":
            cols.append(np.abs(log_return))
        elif name == "hl_range":
            if high is None or low is None:
                raise ValueError("feature 'hl_range' needs high and low columns")
            hl = np.log(np.asarray(high, dtype=np.float64)[1:] / np.asarray(low, dtype=np.float64)[1:])
            # a missing or inverted high/low (a data gap) reads as "no range" rather than poisoning the window
            cols.append(np.where(np.isfinite(hl) & (hl >= 0), hl, 0.0))
        elif name == "log_volume_change":
            if volume is None:
                raise ValueError("feature 'log_volume_change' needs a volume column")
            # +1 keeps zero-volume days (halts) finite
            cols.append(np.diff(np.log1p(np.asarray(volume, dtype=np.float64))))
    return np.stack(cols, axis=1)  # (T-1, F)


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
        std = np.where(np.sqrt(var) > 1e-12, np.sqrt(var), 1.0)
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
