"""A trained GRU plus everything needed to turn raw prices into price forecasts.

Used by evaluation inside the pipeline and by the MLflow pyfunc wrapper outside it; no Prefect, no
MLflow, no I/O beyond reading/writing the bundle folder it is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .gru import GRUConfig, GRUForecaster
from .windows import Scaler, WindowSpec, all_input_windows, compute_features

SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.pt"


@dataclass(frozen=True)
class ModelSpec:
    """Everything besides the weights that a forecast needs."""

    window: WindowSpec
    gru: GRUConfig
    scaler: Scaler
    price_column: str = "close"
    # Per-horizon multiplier in [0, 1] fit on the validation split: 0 means "fall back to naive".
    shrinkage: tuple[float, ...] = (1.0,)

    def to_dict(self) -> dict:
        return {
            "window": self.window.to_dict(),
            "gru": self.gru.to_dict(),
            "scaler": self.scaler.to_dict(),
            "price_column": self.price_column,
            "shrinkage": list(self.shrinkage),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(
            window=WindowSpec.from_dict(d["window"]),
            gru=GRUConfig(**d["gru"]),
            scaler=Scaler.from_dict(d["scaler"]),
            price_column=d["price_column"],
            shrinkage=tuple(float(v) for v in d["shrinkage"]),
        )


class Forecaster:
    def __init__(self, spec: ModelSpec, net: GRUForecaster) -> None:
        self.spec = spec
        self.net = net.eval().cpu()

    # ---- bundle I/O --------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SPEC_FILE).write_text(json.dumps(self.spec.to_dict(), indent=2))
        torch.save(self.net.state_dict(), folder / WEIGHTS_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "Forecaster":
        folder = Path(folder)
        spec = ModelSpec.from_dict(json.loads((folder / SPEC_FILE).read_text()))
        net = GRUForecaster(spec.gru)
        net.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        return cls(spec, net)

    # ---- numeric ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_log_returns(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Scaled windows (N, L, F) -> cumulative log-returns (N, H), shrinkage applied."""
        outs = []
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32))
            outs.append(self.net(xb).numpy())  # (B, H)
        scaled = np.concatenate(outs) if outs else np.empty((0, self.spec.window.horizon), np.float32)
        return scaled.astype(np.float64) * np.asarray(self.spec.shrinkage) * self.spec.scaler.target_scale

    def forecast_frame(self, prices: pd.DataFrame, all_dates: bool = False) -> pd.DataFrame:
        """Raw prices in the canonical long format -> `ticker, date, horizon, forecast_close`.

        With `all_dates`, forecasts are made from every day with a full window behind it (a
        backtest), and the frame also carries `base_date`, the last day the forecast could see.
        """
        spec = self.spec
        price_col = _pick_price_column(prices, spec.price_column)
        missing = [c for c in ("ticker", "date") if c not in prices.columns]
        if missing:
            raise ValueError(f"input is missing column(s) {missing}; columns found: {list(prices.columns)}")
        frames = []
        lookback, horizon = spec.window.lookback, spec.window.horizon
        for ticker, g in prices.groupby("ticker", sort=True):
            g = g.sort_values("date")
            if len(g) < lookback + 1:
                continue  # too little history: no complete window
            p = g[price_col].to_numpy(np.float64)
            vol = g["volume"].to_numpy(np.float64) if "volume" in g.columns else None
            feats = spec.scaler.transform(compute_features(p, vol, spec.window.features))  # (T-1, F)
            x = all_input_windows(feats, lookback) if all_dates else feats[-lookback:][None]  # (N, L, F)
            base_idx = np.arange(lookback, len(p)) if all_dates else np.array([len(p) - 1])
            cum = self.predict_log_returns(x)  # (N, H)
            base_price = p[base_idx]
            base_dates = pd.to_datetime(g["date"].to_numpy()[base_idx])
            n = len(base_idx)
            steps = np.tile(np.arange(1, horizon + 1), n)
            base_rep = np.repeat(base_dates, horizon)
            out = pd.DataFrame(
                {
                    "ticker": str(ticker),
                    "date": _add_business_days(base_rep, steps),
                    "horizon": steps.astype(np.int64),
                    "forecast_close": (base_price[:, None] * np.exp(cum)).reshape(-1),
                }
            )
            if all_dates:
                out["base_date"] = base_rep
            frames.append(out)
        if not frames:
            raise ValueError(f"no ticker has the {lookback + 1} rows of history a forecast needs")
        return pd.concat(frames, ignore_index=True)


def _pick_price_column(prices: pd.DataFrame, wanted: str) -> str:
    if wanted in prices.columns:
        return wanted
    if wanted == "adj_close" and "close" in prices.columns and "adj_close" not in prices.columns:
        raise ValueError("model was trained on 'adj_close' but the input has only 'close'")
    raise ValueError(f"input has no '{wanted}' column; columns found: {list(prices.columns)}")


def _add_business_days(dates: pd.DatetimeIndex, steps: np.ndarray) -> np.ndarray:
    """Calendar of the forecast: business days (Mon-Fri) after the base date."""
    base = np.asarray(dates, dtype="datetime64[D]")
    return np.busday_offset(np.busday_offset(base, 0, roll="backward"), steps, roll="forward").astype(
        "datetime64[ns]"
    )
