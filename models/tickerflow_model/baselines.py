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
  so a forecast from a base day reads returns up to that day only. The one-day quantile is exact: the
  mean plus the one-day volatility times the standardized t quantile. For h > 1 the sum of GARCH-t
  returns is not t (the variance path is random and leans on the sign of each shock), so the h-day
  quantiles are empirical quantiles of paths of the fitted model simulated from a fixed seed: the same
  prices give the same quantiles in every run (`garch_path_quantiles`).
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

from .atomic_io import stable_hash
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
# The h-day GARCH quantiles (h > 1) come from simulated paths: this many (half of them the mirror image
# of the other half), drawn from a generator seeded with GARCH_SEED, so the same prices and parameters
# give the same quantiles in every run. The Monte Carlo error of the 1% and 99% quantiles is 1.2-1.8% of
# their distance from the mean, about 0.03-0.05 of the h-day standard deviation (bench/garch_sim_error.py).
GARCH_PATHS = 20_000
GARCH_SEED = 20_261_207
# Paths start from variances on a fixed grid, GARCH_GRID_STEP apart in log volatility; each base day's
# quantiles are interpolated between the two grid points around its own variance (the largest error
# measured is 0.4% of a tail quantile, a quarter of the Monte Carlo error's RMS: bench/garch_sim_error.py).
GARCH_GRID_STEP = 0.1
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


def garch_next_day(prices: np.ndarray, base_idx: np.ndarray, params: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """The next day's mean and variance (n,), (n,) in percent from each base day, the parameters fixed.

    arch filters the variance recursion through every return of `prices` and forecasts from each
    base day with the returns up to that day only (`forecast(start=...)`: one origin per day).
    """
    base_idx = np.asarray(base_idx)
    if base_idx.min() < 1:
        raise ValueError("a GARCH forecast needs at least one return before its base day")
    model = _garch_model(_percent_returns(prices))
    origin0 = int(base_idx.min()) - 1  # the return ending on the base day b is r[b - 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # arch reads the parameters by position, in its own order
        fc = model.forecast(pd.Series(params), horizon=1, start=origin0, reindex=False)
    rows = base_idx - 1 - origin0  # (n,)
    return fc.mean.to_numpy()[rows, 0], fc.variance.to_numpy()[rows, 0]


def garch_quantiles(
    prices: np.ndarray, base_idx: np.ndarray, horizon: int, levels, params: dict[str, float]
) -> np.ndarray:
    """Quantiles (n, H, Q) of the cumulative log return from each base day, the parameters fixed.

    Day 1 is exact: the next day's mean plus its volatility times the standardized t quantile
    (`garch_next_day`). Days 2..H are read from simulated paths of the fitted model that start from
    that variance (`garch_path_quantiles`), plus h times the constant mean.
    """
    from arch.univariate import StudentsT  # where used, as in _garch_model

    base_idx = np.asarray(base_idx)
    if len(base_idx) == 0:
        return np.empty((0, horizon, len(levels)))
    mean1, var1 = garch_next_day(prices, base_idx, params)  # (n,), (n,) percent, percent^2
    z = np.asarray(StudentsT().ppf(np.asarray(levels, dtype=np.float64), [params["nu"]]))  # (Q,) unit variance
    out = np.empty((len(base_idx), horizon, len(levels)))  # percent
    out[:, 0] = mean1[:, None] + np.sqrt(var1)[:, None] * z[None, :]
    if horizon > 1:
        steps = np.arange(2, horizon + 1, dtype=np.float64)  # (H-1,)
        out[:, 1:] = params["mu"] * steps[None, :, None] + garch_path_quantiles(params, var1, horizon, levels)
    return out / GARCH_PERCENT


def garch_path_quantiles(
    params: dict[str, float],
    next_variance: np.ndarray,
    horizon: int,
    levels,
    paths: int = GARCH_PATHS,
    seed: int = GARCH_SEED,
    grid_step: float | None = GARCH_GRID_STEP,
) -> np.ndarray:
    """Simulated quantiles (n, H-1, Q) of the h-day return minus h * mu, h = 2..H, percent.

    With the parameters fixed, the future of a GJR-GARCH(1,1) from a base day depends only on the
    next day's variance v (`next_variance`, (n,)): eps_k = sigma_k z_k, z_k standardized t(nu),
    sigma2_{k+1} = omega + (alpha + gamma [eps_k < 0]) eps_k^2 + beta sigma2_k, sigma2_1 = v. So the
    paths are simulated once per point of a grid of v (log sigma on multiples of `grid_step`, the
    same paths for every point) and each base day's quantiles are interpolated, linearly in
    log sigma, between the two points around its v, as multiples of sigma (exact where omega is
    negligible, the quantiles then scaling with sigma). The grid is anchored at fixed points, so a
    base day's quantiles do not depend on which other base days are asked for in the same call: a
    served forecast equals the one evaluation scored. `grid_step=None` simulates at each v itself.
    Cost: (grid points) x paths x H, whatever n is; nothing global is touched (a local generator).
    """
    omega, alpha, gamma, beta, nu = (params[k] for k in ("omega", "alpha[1]", "gamma[1]", "beta[1]", "nu"))
    v = np.asarray(next_variance, dtype=np.float64)  # (n,)
    if not (np.all(np.isfinite(v)) and np.all(v > 0)):
        raise ValueError("the next day's GARCH variance must be positive and finite at every base day")
    if paths < 2 or paths % 2:
        raise ValueError(f"paths must be an even number >= 2 (antithetic pairs), got {paths}")
    tau = np.asarray(levels, dtype=np.float64)  # (Q,)
    if horizon < 2 or len(v) == 0:
        return np.empty((len(v), max(horizon - 1, 0), len(tau)))
    rng = np.random.default_rng(seed)
    half = rng.standard_t(nu, size=(horizon, paths // 2)) * np.sqrt((nu - 2.0) / nu)  # (H, S/2) unit variance
    z = np.concatenate([half, -half], axis=1)  # (H, S): antithetic pairs, the shocks' law being symmetric
    if grid_step is None:
        return _simulated_spread(v, z, tau, omega, alpha, gamma, beta)
    u = 0.5 * np.log(v) / grid_step  # (n,) log sigma in grid steps from log sigma = 0
    k = np.floor(u)  # (n,) the grid point at or below each base day
    first = int(k.min())
    node_sigma = np.exp(np.arange(first, int(k.max()) + 2) * grid_step)  # (G,) points k.min() .. k.max() + 1
    node_q = _simulated_spread(node_sigma**2, z, tau, omega, alpha, gamma, beta)  # (G, H-1, Q)
    scaled = node_q / node_sigma[:, None, None]  # (G, H-1, Q) in multiples of the starting sigma
    lo, w = (k - first).astype(np.int64), (u - k)[:, None, None]  # (n,), (n, 1, 1)
    return ((1.0 - w) * scaled[lo] + w * scaled[lo + 1]) * np.sqrt(v)[:, None, None]  # (n, H-1, Q)


def _simulated_spread(
    start_variance: np.ndarray,
    z: np.ndarray,
    tau: np.ndarray,
    omega: float,
    alpha: float,
    gamma: float,
    beta: float,
    chunk: int = 16,
) -> np.ndarray:
    """Empirical quantiles (G, H-1, Q) of the cumulative shock sum_k eps_k, h = 2..H, from each start.

    `z`: (H, S) standardized shocks shared by every start. Quantiles as numpy's default ("linear")
    method; starts are simulated `chunk` at a time to bound memory (G x S per array).
    """
    horizon, n_paths = z.shape
    # eps < 0 exactly when z < 0, so sigma2_{k+1} = omega + sigma2_k * growth_k: growth is shared by every start
    growth = beta + (alpha + gamma * (z < 0)) * z * z  # (H, S)
    pos = tau * (n_paths - 1)  # (Q,)
    below = np.floor(pos).astype(np.int64)
    above = np.minimum(below + 1, n_paths - 1)
    frac = pos - below
    out = np.empty((len(start_variance), horizon - 1, len(tau)))
    for c in range(0, len(start_variance), chunk):
        var = np.repeat(start_variance[c : c + chunk, None], n_paths, axis=1)  # (g, S) sigma2 of the next step
        total = np.zeros_like(var)  # (g, S) cumulative shock
        eps = np.empty_like(var)  # (g, S)
        for h in range(horizon):
            np.sqrt(var, out=eps)
            eps *= z[h]
            total += eps
            if h > 0:
                ordered = np.sort(total, axis=1)  # (g, S)
                out[c : c + chunk, h - 1] = ordered[:, below] * (1.0 - frac) + ordered[:, above] * frac
            var *= growth[h]
            var += omega
    return out


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

    def digest(self) -> str:
        """What the baseline forecasts with, as a hash of its spec: the same fit registers nothing new."""
        return stable_hash({"kind": "baseline", "spec": {**asdict(self.spec), "levels": list(self.spec.levels)}})

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
        from .forecaster import _pick_price_column, anchor_column, forecast_rows

        spec = self.spec
        price_col = _pick_price_column(prices, spec.price_column)
        anchor = anchor_column(prices, price_col)
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
                g[anchor].to_numpy(np.float64)[base_idx],
                np.zeros(q.shape[:2]),
                q,
                spec.levels,
                all_dates,
                anchor,
            )
            frames.append(out)
        if not frames:
            raise ValueError(f"no ticker has the {self.min_rows} rows of history the {spec.name} baseline needs")
        return pd.concat(frames, ignore_index=True)
