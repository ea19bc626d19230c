"""A trained GRU plus everything needed to turn raw prices into price forecasts.

Used by evaluation inside the pipeline and by the MLflow pyfunc wrapper outside it; no Prefect, no
MLflow, no I/O beyond reading/writing the bundle folder it is given.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from .atomic_io import stable_hash
from .calibration import apply_cqr, fit_cqr_margins
from .config import GRUConfig, WindowSpec
from .features import compute_features, market_features, market_on
from .gru import GRUForecaster, predict_batched
from .quantiles import median_index, quantile_columns
from .windows import Scaler, all_input_windows

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
    # Conformal margins (H rows, one per central interval, widest first) fit on the validation split,
    # in units of each window's volatility scale; empty: uncalibrated.
    calibration: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        if len(self.shrinkage) != self.gru.horizon:
            raise ValueError(f"shrinkage needs one value per horizon step ({self.gru.horizon}), got {self.shrinkage}")
        n_pairs = self.gru.n_quantiles // 2
        if self.calibration and (
            len(self.calibration) != self.gru.horizon or any(len(row) != n_pairs for row in self.calibration)
        ):
            raise ValueError(
                f"calibration needs {self.gru.horizon} row(s) of {n_pairs} margin(s), got {self.calibration}"
            )

    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.gru.quantiles

    def to_dict(self) -> dict:
        return {
            "window": self.window.to_dict(),
            "gru": self.gru.to_dict(),
            "scaler": self.scaler.to_dict(),
            "price_column": self.price_column,
            "shrinkage": list(self.shrinkage),
            "calibration": [list(row) for row in self.calibration],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(
            window=WindowSpec.from_dict(d["window"]),
            gru=GRUConfig.from_dict(d["gru"]),
            scaler=Scaler.from_dict(d["scaler"]),
            price_column=d["price_column"],
            shrinkage=tuple(float(v) for v in d["shrinkage"]),
            calibration=tuple(tuple(float(v) for v in row) for row in d.get("calibration", [])),
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

    def digest(self) -> str:
        """What the bundle forecasts with, as a hash: the spec and every weight's bytes. Two fits that came out
        the same (the same data, config and seed) have the same digest, so the second registers nothing."""
        weights = hashlib.sha256()
        for key, tensor in sorted(self.net.state_dict().items()):
            weights.update(key.encode())
            weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return stable_hash({"kind": "gru", "spec": self.spec.to_dict(), "weights": weights.hexdigest()})

    @property
    def min_rows(self) -> int:
        """Rows of one ticker a forecast needs: the lookback, the long-memory history before it, one close more."""
        return self.spec.window.min_forecast_rows

    # ---- numeric ------------------------------------------------------------------------------
    def _located(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network quantiles (N, H, Q) moved so that the median is the shrunk point forecast, and scale (N, H).

        Target units (the scaler's); batched under inference mode.
        """
        return self._shrunk(*predict_batched(self.net, x))  # (N, H, Q), (N, H)

    def _shrunk(self, q: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's quantiles (N, H, Q) moved so that the median is the shrunk point forecast; scale (N, H)."""
        m = median_index(self.spec.quantiles)
        shrink = np.asarray(self.spec.shrinkage)  # (H,)
        # the whole distribution moves with its median: the point forecast stays its q50
        return q - ((1.0 - shrink) * q[:, :, m])[:, :, None], scale

    def predict_quantiles(self, x: np.ndarray) -> np.ndarray:
        """Scaled windows (N, L, F) -> calibrated quantiles (N, H, Q) of the cumulative log return.

        Non-decreasing along Q (the network's construction, kept by the calibration).
        """
        q, scale = self._located(x)
        if self.spec.calibration:
            q = apply_cqr(q, scale, np.asarray(self.spec.calibration), self.spec.quantiles)
        return q * self.spec.scaler.target_scale

    def predict_log_returns(self, x: np.ndarray) -> np.ndarray:
        """Scaled windows (N, L, F) -> point forecast (N, H): cumulative log return, 0 = naive.

        It is the median (q50) of `predict_quantiles`, shrunk toward naive.
        """
        q, _ = self._located(x)
        return q[:, :, median_index(self.spec.quantiles)] * self.spec.scaler.target_scale

    def calibrate(self, x_val: np.ndarray, y_val: np.ndarray, *, narrow: bool = False) -> "Forecaster":
        """This forecaster with CQR margins fit on validation windows x (N, L, F), scaled targets y (N, H);
        margins that would narrow an interval only with `narrow` (`fit_cqr_margins`)."""
        return self.calibrated_on(*predict_batched(self.net, x_val), y_val, narrow=narrow)

    def calibrated_on(
        self, net_q: np.ndarray, net_scale: np.ndarray, y_val: np.ndarray, *, narrow: bool = False
    ) -> "Forecaster":
        """`calibrate` from the network's own output on the validation windows, `predict_batched(self.net, x_val)`:
        quantiles (N, H, Q) and scale (N, H), for a caller that already ran that pass."""
        q, scale = self._shrunk(net_q, net_scale)
        margins = fit_cqr_margins(q, y_val, scale, self.spec.quantiles, narrow=narrow)  # (H, P)
        spec = replace(self.spec, calibration=tuple(tuple(float(v) for v in row) for row in margins))
        return Forecaster(spec, self.net)

    def input_windows(
        self, prices: pd.DataFrame, all_dates: bool = False
    ) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per ticker with enough rows: (ticker, dates (T,), prices (T,), base indices (N,), scaled windows
        (N, L, F), the user's prices (T,): `anchor_column`'s, which the forecasts are in).

        The same features as the window dataset's (`compute_features`, the market from the whole frame
        given): the last window only, or with `all_dates` one from every day with the history a
        served forecast needs.
        """
        spec = self.spec
        price_col = _pick_price_column(prices, spec.price_column)
        anchor = anchor_column(prices, price_col)
        missing = [c for c in ("ticker", "date", *spec.window.columns) if c not in prices.columns]
        if missing:
            raise ValueError(f"input is missing column(s) {missing}; columns found: {list(prices.columns)}")
        lookback, features = spec.window.lookback, spec.window.resolved_features
        # the universe's market features come from the whole frame given, as they did from the training frame
        market = market_features(prices, price_col) if spec.window.uses_market else None
        first = self.min_rows - 1  # the first base day with a full window and its long-memory history
        for ticker, g in prices.groupby("ticker", sort=True):
            if len(g) < self.min_rows:
                continue
            g = g.sort_values("date")
            dates = g["date"].to_numpy("datetime64[ns]")
            p = g[price_col].to_numpy(np.float64)
            user = g[anchor].to_numpy(np.float64)
            columns = {c: g[c].to_numpy(np.float64) for c in spec.window.columns}
            own_market = None if market is None else market_on(market, dates)
            feats = spec.scaler.transform(compute_features(p, features, columns, own_market))  # (T-1, F)
            if all_dates:
                yield (
                    str(ticker),
                    dates,
                    p,
                    np.arange(first, len(p)),
                    all_input_windows(feats, lookback)[first - lookback :],
                    user,
                )
            else:
                yield str(ticker), dates, p, np.array([len(p) - 1]), feats[-lookback:][None], user  # (1, L, F)

    def forecast_frame(self, prices: pd.DataFrame, all_dates: bool = False) -> pd.DataFrame:
        """Raw prices in the canonical long format -> `ticker, date, horizon, forecast_close, q01 ... q99,
        base_price, price_column`.

        The quantile columns are prices in the user's units: the last close the input holds (`base_price`, of
        the column `price_column`: `close` when the input has it, adjusted or not, else the model's own) times
        exp(quantile of the cumulative log return the model forecasts from its own price), non-decreasing
        from q01 to q99; `forecast_close` is the q50 column.

        With `all_dates`, forecasts are made from every day with a full window behind it (a
        backtest), and the frame also carries `base_date`, the last day the forecast could see.
        """
        spec = self.spec
        frames = []
        anchor = anchor_column(prices, _pick_price_column(prices, spec.price_column))
        for ticker, dates, _, base_idx, x, user in self.input_windows(prices, all_dates):
            quant = self.predict_quantiles(x)  # (N, H, Q), batched
            cum = quant[:, :, median_index(spec.quantiles)]  # (N, H): the point forecast is the q50
            rows = forecast_rows(ticker, dates[base_idx], user[base_idx], cum, quant, spec.quantiles, all_dates, anchor)
            frames.append(rows)
        if not frames:
            raise ValueError(f"no ticker has the {self.min_rows} rows of history a forecast needs")
        return pd.concat(frames, ignore_index=True)


def forecast_rows(
    ticker: str,
    base_dates: np.ndarray,
    base_price: np.ndarray,
    point: np.ndarray,
    quant: np.ndarray,
    levels: tuple[float, ...],
    all_dates: bool,
    anchor: str = "close",
) -> pd.DataFrame:
    """One ticker's forecasts in price units, one row per base day and horizon step: `base_price` (N,), the
    price of column `anchor` on each base day, times exp of each cumulative log return.

    `point` (N, H) and `quant` (N, H, Q) are cumulative log returns from each base day (N,); every
    forecaster (the GRU, a baseline) turns its arrays into the same columns here.
    """
    n, horizon = quant.shape[:2]
    steps = np.tile(np.arange(1, horizon + 1), n)  # (N*H,)
    base_rep = np.repeat(pd.to_datetime(base_dates), horizon)  # (N*H,)
    out = pd.DataFrame(
        {
            "ticker": ticker,
            "date": _add_business_days(base_rep, steps),
            "horizon": steps.astype(np.int64),
            "forecast_close": (base_price[:, None] * np.exp(point)).reshape(-1),
            **{
                name: (base_price[:, None] * np.exp(quant[:, :, j])).reshape(-1)
                for j, name in enumerate(quantile_columns(levels))
            },
        }
    )
    out["base_price"] = np.repeat(np.asarray(base_price, dtype=np.float64), horizon)
    out["price_column"] = anchor
    if all_dates:
        out["base_date"] = base_rep
    return out


def forecast_columns(levels: tuple[float, ...]) -> list[str]:
    """The columns every forecaster's frame has (`price_frame`), in order: a pyfunc's output schema."""
    return ["ticker", "date", "horizon", "forecast_close", *quantile_columns(levels), "base_price", "price_column"]


def anchor_column(prices: pd.DataFrame, price_column: str) -> str:
    """The column forecasts are priced in: the user's own `close` (the price a chart or a broker shows,
    adjusted or not) when the input has it, else the model's price column."""
    return "close" if "close" in prices.columns and prices["close"].notna().any() else price_column


def _pick_price_column(prices: pd.DataFrame, wanted: str) -> str:
    if wanted in prices.columns:
        return wanted
    if wanted == "adj_close" and "close" in prices.columns and "adj_close" not in prices.columns:
        raise ValueError("model was trained on 'adj_close' but the input has only 'close'")
    raise ValueError(f"input has no '{wanted}' column; columns found: {list(prices.columns)}")


EXCHANGE = "XNYS"  # the exchange whose trading days forecasts target (an exchange_calendars code)


def _add_business_days(dates: pd.DatetimeIndex, steps: np.ndarray, exchange: str = EXCHANGE) -> np.ndarray:
    """The `steps`-th trading session of `exchange` after each base date: (N,), (N,) -> (N,) datetime64[ns].

    A forecast made on the Friday before a market holiday targets the next session, not the holiday (it
    would never be scored). A base date that is no session counts from the session before it. Dates the
    exchange's calendar does not cover fall back to business days (Mon-Fri).
    """
    base = np.asarray(dates, dtype="datetime64[D]")  # (N,)
    steps = np.asarray(steps, dtype=np.int64)  # (N,)
    out = np.busday_offset(np.busday_offset(base, 0, roll="backward"), steps, roll="forward")  # the fallback
    if base.size == 0:
        return out.astype("datetime64[ns]")
    # two calendar days per session ahead, and a month, cover any run of holidays
    last = base.max() + np.timedelta64(2 * int(steps.max(initial=0)) + 31, "D")
    sessions = _sessions(exchange, int(str(base.min())[:4]), int(str(last)[:4]))  # (S,) datetime64[D], sorted
    if sessions.size:
        pos = np.searchsorted(sessions, base, side="right") - 1 + steps  # the session on or before base, + steps
        covered = (base >= sessions[0]) & (pos < sessions.size)
        out[covered] = sessions[pos[covered]]
    return out.astype("datetime64[ns]")


@functools.lru_cache(maxsize=8)
def _sessions(exchange: str, first_year: int, last_year: int) -> np.ndarray:
    """The sessions of `exchange` from `first_year` to `last_year`, clipped to what its calendar covers."""
    try:
        import exchange_calendars  # here: 0.4 s to import, and only forecasts need it
    except ImportError:  # served where the model's pip requirements were not installed (--env-manager local)
        logging.getLogger(__name__).warning(
            "exchange-calendars is not installed: forecast dates are business days (Mon-Fri), not %s sessions", exchange
        )
        return np.array([], dtype="datetime64[D]")
    calendar_type = type(exchange_calendars.get_calendar(exchange))
    start, end = pd.Timestamp(f"{first_year}-01-01"), pd.Timestamp(f"{last_year}-12-31")
    lowest = calendar_type.bound_min()
    highest = calendar_type.bound_max() if hasattr(calendar_type, "bound_max") else None
    start = max(start, lowest) if lowest is not None else start
    end = min(end, highest) if highest is not None else end
    if start > end:
        return np.array([], dtype="datetime64[D]")
    try:
        calendar = exchange_calendars.get_calendar(exchange, start=start, end=end)
    except ValueError:  # a calendar whose rules do not hold over the whole range: business days instead
        return np.array([], dtype="datetime64[D]")
    return calendar.sessions.to_numpy().astype("datetime64[D]")
