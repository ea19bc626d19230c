"""Distribution baselines: quantiles of the cumulative log return from a ticker's own past prices.

Each baseline turns one ticker's price series `p` (T,) and the indices of the base days (n,) into
quantiles of log(p[b + h] / p[b]) for h = 1..H at the given levels: an (n, H, Q) array, the same
shape and meaning as the GRU's `predict_quantiles`. Only prices up to each base day are read.

- `static_quantile`: empirical quantiles of the ticker's h-day returns over its training period.
- `rolling_quantile`: empirical quantiles of the h-day returns in the 250 days up to the base day.
- `ewma`: RiskMetrics (J.P. Morgan, 1996) exponentially weighted volatility with lambda = 0.94,
  zero mean, Gaussian quantiles; the h-day quantile scales the one-day volatility by sqrt(h) (the
  square-root-of-time rule, exact for independent returns).
- `garch`: GJR-GARCH(1,1) with Student-t innovations (Glosten, Jagannathan & Runkle 1993; Bollerslev
  1987), fit per ticker by the `arch` package on the daily returns up to the end of the validation
  period; the parameters are then fixed and the variance recursion is filtered through the later days,
  so a forecast from a base day reads returns up to that day only. The h-day quantile is the sum of the
  step means plus the standardized t quantile times the square root of the summed step variances.
  A ticker whose fit fails (too few returns, the optimizer not converging, a non-stationary or
  non-finite fit) gets the EWMA forecast instead, and the reason is kept (`GarchFit.fallback`).

For h > 1 the empirical baselines use overlapping h-day cumulative returns log(p[t] / p[t - h]).
`BaselineForecaster` wraps one of them behind the same `forecast_frame` as the GRU's `Forecaster`,
so a baseline can be registered, served and become the champion.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from .quantiles import QUANTILE_LEVELS

DISTRIBUTION_BASELINES = ("static_quantile", "rolling_quantile", "ewma", "garch")
ROLLING_DAYS = 250
EWMA_LAMBDA = 0.94
# Fewer past returns than this make a quantile estimate noise: the baseline gives NaN there.
MIN_RETURNS = 20
# A GARCH fit on fewer returns than this is noise (five parameters, one of them a tail index).
GARCH_MIN_RETURNS = 250
# Returns are fit in percent: arch's optimizer is tuned for variances of order 1 to 1000.
GARCH_PERCENT = 100.0
SPEC_FILE = "baseline.json"


def cumulative_log_returns(prices: np.ndarray, h: int) -> np.ndarray:
    """c[t] = log(p[t] / p[t - h]), the h-day return ending on day t; NaN for t < h. (T,) -> (T,)"""
    logp = np.log(np.asarray(prices, dtype=np.float64))
    out = np.full(logp.shape, np.nan)
    out[h:] = logp[h:] - logp[:-h]
    return out


def empirical_quantiles(samples: np.ndarray, levels) -> np.ndarray:
    """Row-wise quantiles of samples padded with NaN: (n, W) -> (n, Q); NaN where a row has < MIN_RETURNS.

    numpy's default ("linear", Hyndman & Fan type 7) interpolation, vectorised across rows: each row
    is sorted (NaN last) and read at position tau * (k - 1) of its k valid values.
    """
    tau = np.asarray(levels, dtype=np.float64)  # (Q,)
    ordered = np.sort(samples, axis=1)  # (n, W), NaN at the end of each row
    k = np.sum(~np.isnan(samples), axis=1)  # (n,)
    pos = tau[None, :] * np.maximum(k - 1, 0)[:, None]  # (n, Q)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(k - 1, 0)[:, None])
    frac = pos - lo
    out = np.take_along_axis(ordered, lo, 1) * (1 - frac) + np.take_along_axis(ordered, hi, 1) * frac
    out[k < MIN_RETURNS] = np.nan
    return out


def static_fit(prices: np.ndarray, horizon: int, levels, fit_end: int) -> np.ndarray:
    """Quantiles of each h-day return ending on days up to `fit_end` (the training period): (H, Q)."""
    out = np.empty((horizon, len(levels)))
    for h in range(1, horizon + 1):
        c = cumulative_log_returns(prices[: fit_end + 1], h)[h:]
        out[h - 1] = empirical_quantiles(c[None, :], levels)[0]
    return out


def static_quantile(prices: np.ndarray, base_idx: np.ndarray, horizon: int, levels, fit_end: int) -> np.ndarray:
    """The training period's quantiles for every base day: (n, H, Q). No base day may precede `fit_end`."""
    base_idx = np.asarray(base_idx)
    if len(base_idx) and base_idx.min() < fit_end:
        raise ValueError(
            f"static quantiles fit up to day {fit_end} cannot forecast from the earlier day {base_idx.min()}"
        )
    return np.broadcast_to(static_fit(prices, horizon, levels, fit_end), (len(base_idx), horizon, len(levels))).copy()


def rolling_quantile(
    prices: np.ndarray, base_idx: np.ndarray, horizon: int, levels, window: int = ROLLING_DAYS
) -> np.ndarray:
    """Quantiles of the h-day returns ending in the `window` days up to each base day: (n, H, Q).

    A base day with less history uses what there is (at least MIN_RETURNS returns, else NaN).
    """
    base_idx = np.asarray(base_idx)
    out = np.empty((len(base_idx), horizon, len(levels)))
    for h in range(1, horizon + 1):
        padded = np.concatenate([np.full(window - 1, np.nan), cumulative_log_returns(prices, h)])  # (T + W - 1,)
        windows = np.lib.stride_tricks.sliding_window_view(padded, window)  # (T, W): row t = c[t - W + 1 .. t]
        out[:, h - 1] = empirical_quantiles(windows[base_idx], levels)
    return out


def ewma(prices: np.ndarray, base_idx: np.ndarray, horizon: int, levels, lam: float = EWMA_LAMBDA) -> np.ndarray:
    """RiskMetrics EWMA volatility, Gaussian quantiles scaled by sqrt(h): (n, H, Q).

    sigma^2 on base day b is the exponentially weighted mean of the squared one-day returns up to
    and including b (weights lam^i, normalised over the returns there are, which replaces the
    recursion's arbitrary start value); the mean return is taken as zero, as RiskMetrics does.
    """
    base_idx = np.asarray(base_idx)
    r = np.diff(np.log(np.asarray(prices, dtype=np.float64)))  # (T-1,): r[t-1] ends on day t
    var = pd.Series(np.square(r)).ewm(alpha=1.0 - lam, adjust=True, min_periods=MIN_RETURNS).mean().to_numpy()
    var = np.concatenate([[np.nan], var])  # (T,): var[t] uses returns ending on days <= t
    sigma = np.sqrt(var[base_idx])  # (n,)
    z = np.array([NormalDist().inv_cdf(float(q)) for q in levels])  # (Q,)
    steps = np.sqrt(np.arange(1, horizon + 1, dtype=np.float64))  # (H,)
    return sigma[:, None, None] * steps[None, :, None] * z[None, None, :]


@dataclass(frozen=True)
class GarchFit:
    """One ticker's GJR-GARCH(1,1)-t parameters (arch's names, percent returns), or why there are none."""

    params: dict[str, float] | None
    fallback: str | None = None  # why the ticker falls back to EWMA


def _garch_model(returns_pct: np.ndarray):
    from arch import arch_model  # imported where used: the core loads without it until a GARCH is asked for

    return arch_model(returns_pct, mean="Constant", vol="GARCH", p=1, o=1, q=1, dist="t", rescale=False)


def _percent_returns(prices: np.ndarray) -> np.ndarray:
    """r[i] = 100 log(p[i+1] / p[i]), the return ending on day i + 1. (T,) -> (T-1,)"""
    return GARCH_PERCENT * np.diff(np.log(np.asarray(prices, dtype=np.float64)))


def fit_garch(prices: np.ndarray, fit_end: int) -> GarchFit:
    """GJR-GARCH(1,1)-t fit on the returns ending on days up to `fit_end`, by maximum likelihood (arch)."""
    r = _percent_returns(prices[: fit_end + 1])
    if len(r) < GARCH_MIN_RETURNS:
        return GarchFit(None, f"only {len(r)} returns up to the fit end, a GARCH fit needs {GARCH_MIN_RETURNS}")
    if not np.all(np.isfinite(r)) or float(np.std(r)) < 1e-8:
        return GarchFit(None, "the returns up to the fit end are constant or not finite")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # arch's convergence and scaling warnings: judged below instead
            res = _garch_model(r).fit(disp="off", show_warning=False)
    except Exception as exc:  # noqa: BLE001 - any failure of the optimizer is a reason to fall back
        return GarchFit(None, f"the fit raised {type(exc).__name__}: {str(exc)[:200]}")
    params = {str(k): float(v) for k, v in res.params.items()}
    if res.convergence_flag != 0:
        return GarchFit(None, f"the optimizer did not converge (flag {res.convergence_flag})")
    if not all(np.isfinite(v) for v in params.values()):
        return GarchFit(None, f"the fit gave non-finite parameters {params}")
    persistence = params["alpha[1]"] + params["gamma[1]"] / 2 + params["beta[1]"]
    if persistence >= 1.0:
        return GarchFit(None, f"the fit is not stationary (alpha + gamma/2 + beta = {persistence:.4f})")
    return GarchFit(params)


def garch_quantiles(
    prices: np.ndarray, base_idx: np.ndarray, horizon: int, levels, params: dict[str, float]
) -> np.ndarray:
    """Quantiles (n, H, Q) of the cumulative log return from each base day, the parameters fixed.

    arch filters the variance recursion through every return of `prices` and forecasts from each
    base day with the returns up to that day only (`forecast(start=...)`: one origin per day).
    """
    base_idx = np.asarray(base_idx)
    if len(base_idx) == 0:
        return np.empty((0, horizon, len(levels)))
    if base_idx.min() < 1:
        raise ValueError("a GARCH forecast needs at least one return before its base day")
    model = _garch_model(_percent_returns(prices))
    series = pd.Series(params)  # arch reads the parameters by position, in its own order
    origin0 = int(base_idx.min()) - 1  # the return ending on the base day b is r[b - 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc = model.forecast(series, horizon=horizon, start=origin0, reindex=False)
    rows = base_idx - 1 - origin0  # (n,)
    mean = np.cumsum(fc.mean.to_numpy()[rows], axis=1)  # (n, H) cumulative mean, percent
    var = np.cumsum(fc.variance.to_numpy()[rows], axis=1)  # (n, H) cumulative variance, percent^2
    z = np.asarray(model.distribution.ppf(np.asarray(levels, dtype=np.float64), series.iloc[-1:]))  # (Q,) unit variance
    return (mean[:, :, None] + np.sqrt(var)[:, :, None] * z[None, None, :]) / GARCH_PERCENT


def garch(prices: np.ndarray, base_idx: np.ndarray, horizon: int, levels, fit: GarchFit) -> np.ndarray:
    """`garch_quantiles` with the ticker's fit, or EWMA where the fit fell back: (n, H, Q)."""
    if fit.params is None:
        return ewma(prices, base_idx, horizon, levels)
    return garch_quantiles(prices, base_idx, horizon, levels, fit.params)


def baseline_quantiles(
    name: str,
    prices: np.ndarray,
    base_idx: np.ndarray,
    horizon: int,
    levels,
    fit_end: int,
    garch_fit: GarchFit | None = None,
) -> np.ndarray:
    """Dispatch by name; `fit_end` is the last training-period day (static_quantile), `garch_fit` the
    ticker's GARCH parameters (garch)."""
    if name == "static_quantile":
        return static_quantile(prices, base_idx, horizon, levels, fit_end)
    if name == "rolling_quantile":
        return rolling_quantile(prices, base_idx, horizon, levels)
    if name == "ewma":
        return ewma(prices, base_idx, horizon, levels)
    if name == "garch":
        if garch_fit is None:
            raise ValueError("the garch baseline needs the ticker's fit (fit_garch)")
        return garch(prices, base_idx, horizon, levels, garch_fit)
    raise ValueError(f"unknown distribution baseline {name!r}; known: {DISTRIBUTION_BASELINES}")


# ---- a servable baseline -------------------------------------------------------------------------
@dataclass(frozen=True)
class BaselineSpec:
    """What a baseline forecast needs: which baseline, its levels and, for static, each ticker's fit."""

    name: str
    horizon: int
    price_column: str = "close"
    levels: tuple[float, ...] = QUANTILE_LEVELS
    static: dict[str, list[list[float]]] = field(default_factory=dict)  # ticker -> (H, Q) log-return quantiles
    garch: dict[str, dict[str, float]] = field(default_factory=dict)  # ticker -> GJR-GARCH-t parameters
    fallback: dict[str, str] = field(default_factory=dict)  # ticker -> why garch serves EWMA for it

    def __post_init__(self) -> None:
        if self.name not in DISTRIBUTION_BASELINES:
            raise ValueError(f"unknown distribution baseline {self.name!r}; known: {DISTRIBUTION_BASELINES}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")


class BaselineForecaster:
    """A distribution baseline with the GRU Forecaster's `forecast_frame`: prices in, quantiles in prices out.

    Its point forecast (`forecast_close`) is the last price, the naive forecast: the baselines
    forecast the spread, not the direction. `static_quantile` serves the quantiles fit on each
    ticker's training period and gives no forecast for a ticker it was not fit on.
    """

    def __init__(self, spec: BaselineSpec) -> None:
        self.spec = spec

    @classmethod
    def fit(
        cls,
        name: str,
        histories: dict[str, np.ndarray],
        train_rows: dict[str, int],
        horizon: int,
        levels=QUANTILE_LEVELS,
        price_column: str = "close",
        garch_fits: dict[str, GarchFit] | None = None,
    ) -> "BaselineForecaster":
        """`histories`: ticker -> prices in date order; `train_rows`: ticker -> days in its training period;
        `garch_fits`: ticker -> its GARCH fit (garch only)."""
        static, params, fallback = {}, {}, {}
        if name == "static_quantile":
            for ticker, p in histories.items():
                fit = static_fit(p, horizon, levels, train_rows[ticker] - 1)
                if np.isfinite(fit).all():
                    static[str(ticker)] = fit.tolist()
        if name == "garch":
            for ticker, garch_fit in (garch_fits or {}).items():
                if garch_fit.params is None:
                    fallback[str(ticker)] = str(garch_fit.fallback)
                else:
                    params[str(ticker)] = dict(garch_fit.params)
        levels = tuple(float(q) for q in levels)
        return cls(BaselineSpec(name, horizon, price_column, levels, static, params, fallback))

    @property
    def min_rows(self) -> int:
        """Rows of history one forecast needs."""
        return 1 if self.spec.name == "static_quantile" else MIN_RETURNS + self.spec.horizon

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SPEC_FILE).write_text(json.dumps({**asdict(self.spec), "levels": list(self.spec.levels)}))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "BaselineForecaster":
        d = json.loads((Path(folder) / SPEC_FILE).read_text())
        return cls(
            BaselineSpec(
                d["name"],
                int(d["horizon"]),
                d["price_column"],
                tuple(d["levels"]),
                d["static"],
                d.get("garch", {}),
                d.get("fallback", {}),
            )
        )

    def garch_fit(self, ticker: str) -> GarchFit:
        """The ticker's GARCH parameters; a ticker the baseline was not fit on is served EWMA, like a failed fit."""
        params = self.spec.garch.get(str(ticker))
        reason = self.spec.fallback.get(str(ticker), "not a ticker the GARCH baseline was fit on")
        return GarchFit(params, None if params is not None else reason)

    def quantiles(self, ticker: str, prices: np.ndarray, base_idx: np.ndarray) -> np.ndarray:
        """(n, H, Q) cumulative log-return quantiles for one ticker's base days."""
        spec = self.spec
        if spec.name == "static_quantile":
            fit = np.asarray(spec.static.get(str(ticker), np.nan), dtype=np.float64)
            return np.broadcast_to(fit, (len(base_idx), spec.horizon, len(spec.levels))).copy()
        garch_fit = self.garch_fit(ticker) if spec.name == "garch" else None
        return baseline_quantiles(
            spec.name, prices, base_idx, spec.horizon, spec.levels, fit_end=0, garch_fit=garch_fit
        )

    def forecast_frame(self, prices: pd.DataFrame, all_dates: bool = False) -> pd.DataFrame:
        """Raw prices (canonical long format) -> `ticker, date, horizon, forecast_close, q05 .. q95`.

        With `all_dates`, forecasts from every day with enough history behind it, plus `base_date`.
        """
        from .forecaster import _pick_price_column, forecast_rows

        spec = self.spec
        price_col = _pick_price_column(prices, spec.price_column)
        missing = [c for c in ("ticker", "date") if c not in prices.columns]
        if missing:
            raise ValueError(f"input is missing column(s) {missing}; columns found: {list(prices.columns)}")
        frames = []
        for ticker, g in prices.groupby("ticker", sort=True):
            g = g.sort_values("date")
            p = g[price_col].to_numpy(np.float64)
            if len(p) < self.min_rows:
                continue
            base_idx = np.arange(self.min_rows - 1, len(p)) if all_dates else np.array([len(p) - 1])
            q = self.quantiles(str(ticker), p, base_idx)  # (n, H, Q)
            keep = np.isfinite(q).all(axis=(1, 2))
            if not keep.any():
                continue  # e.g. a ticker the static baseline was not fit on
            base_idx, q = base_idx[keep], q[keep]
            # a baseline's point forecast is the last price: a cumulative log return of 0
            out = forecast_rows(
                str(ticker),
                g["date"].to_numpy()[base_idx],
                p[base_idx],
                np.zeros(q.shape[:2]),
                q,
                spec.levels,
                all_dates,
            )
            frames.append(out)
        if not frames:
            raise ValueError(f"no ticker has the {self.min_rows} rows of history the {spec.name} baseline needs")
        return pd.concat(frames, ignore_index=True)
