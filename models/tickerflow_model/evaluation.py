"""Evaluation numerics: the model, the baselines and the current champion on the same test windows.

Every forecaster is scored on exactly the forecasts the model makes on the test split (same ticker,
base date and horizon step):

- point forecasts, in price units: the naive "tomorrow = today", the seasonal naive "same day last
  week", the drift (random walk with the past average change);
- distributions, as quantiles of the cumulative log return: `static_quantile`, `rolling_quantile`
  and `ewma` (see `baselines`), scored in percent log return by pinball loss, interval coverage,
  width and Winkler score (see `metrics`);
- the registry's champion, when there is one and it can be loaded and scored; when it cannot, why
  is kept on the result and the evaluation goes on without it.

All metrics (overall, per ticker, per horizon step) come from one grouped mean over per-forecast
terms, whatever the number of tickers. No Prefect, no MLflow: the champion comes in already loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from .baselines import DISTRIBUTION_BASELINES, BaselineForecaster, baseline_quantiles, fit_garch
from .blend import BLEND, BlendForecaster, blend_quantiles
from .config import EvaluateConfig
from .errors import cause_line
from .forecaster import Forecaster
from .gru import intra_op_threads
from .metrics import METRIC_KEYS, TABLE_METRICS, drift_forecast, naive_scale, seasonal_naive_forecast
from .quantiles import QUANTILE_LEVELS, median_index, quantile_columns
from .risk import (
    COMPARISON_COLUMNS,
    TAIL_COLUMNS,
    DieboldMarianoResult,
    dm_test,
    pinball_comparisons,
    tail_backtests,
)
from .scoring import grouped_metrics, score_terms
from .window_dataset import read_split

CHAMPION = "champion"  # the current champion's name among the forecasters
# forecaster name -> column of the predictions frame holding its point forecast
COLUMN = {
    "model": "forecast",
    "naive": "naive",
    "seasonal_naive": "seasonal_naive",
    "drift": "drift",
    CHAMPION: "champion",
    BLEND: "blend",
    **{b: "naive" for b in DISTRIBUTION_BASELINES},  # a distribution baseline's point forecast is the last price
}
POINT_BASELINES = ("naive", "seasonal_naive", "drift")


def ticker_skill(by_forecaster: dict[str, dict[str, float]]) -> float:
    """One ticker's model skill: 1 - pinball / pinball of static_quantile when both exist, else RMSE skill vs naive."""
    model = by_forecaster.get("model", {})
    static = by_forecaster.get("static_quantile", {})
    if "pinball" in model and static.get("pinball", 0) > 0:
        return 1.0 - model["pinball"] / static["pinball"]
    return model.get("skill", np.nan)


RIVALS = ("garch", "ewma")  # the classic volatility models the GRU is shown against, side by side


def head_to_head(
    metrics: dict, per_ticker: dict, rival: str, score: str = "pinball", t: float | None = None
) -> str | None:
    """One line: the GRU's `score` against `rival`'s overall (with the Diebold-Mariano t of the difference,
    when given) and on how many tickers it is the lower; None when either has no such score."""
    model, other = metrics.get("model", {}), metrics.get(rival, {})
    if score not in model or score not in other:
        return None
    scored = [by for by in per_ticker.values() if score in by.get("model", {}) and score in by.get(rival, {})]
    wins = sum(by["model"][score] < by[rival][score] for by in scored)
    gain = 1.0 - model[score] / other[score] if other[score] > 0 else float("nan")
    return (
        f"the GRU vs {rival}: {score} {model[score]:.4f} vs {other[score]:.4f} "
        f"({gain:+.2%}{'' if t is None else f', t {t:.1f}'}), lower on {wins} of {len(scored)} tickers"
    )


def rival_lines(metrics: dict, per_ticker: dict, t: dict[str, float] | None = None) -> list[str]:
    """`head_to_head` against each of RIVALS that was scored (`t`: rival -> the DM t of the GRU against it)."""
    lines = (head_to_head(metrics, per_ticker, rival, t=(t or {}).get(rival)) for rival in RIVALS)
    return [line for line in lines if line is not None]


def rank_tickers(per_ticker: dict[str, dict[str, dict[str, float]]]) -> pd.Series:
    """ticker -> skill, best first (tickers without a score last)."""
    return pd.Series({t: ticker_skill(by) for t, by in per_ticker.items()}, dtype=float).sort_values(ascending=False)


@dataclass(frozen=True)
class Champion:
    """The registry's champion as evaluation sees it: loaded (anything with the pyfunc `predict`), or why not."""

    version: str
    model: Any = field(default=None, repr=False)
    error: str | None = None  # why it could not be loaded
    reads: tuple[str, ...] = ()  # the columns its input schema requires


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, dict[str, float]]  # forecaster -> metric -> value, on the whole test split
    per_ticker: dict[str, dict[str, dict[str, float]]]  # ticker -> forecaster -> metric -> value
    per_horizon: dict[str, dict[str, dict[str, float]]]  # "h1".. -> forecaster -> metric -> value
    skill: float  # the model's 1 - RMSE_model / RMSE_naive
    n_windows: int
    champion_version: str | None = None
    predictions: pd.DataFrame = field(default=None, repr=False)
    champion_error: str | None = None  # why the champion was not compared, when it was not
    levels: tuple[float, ...] = QUANTILE_LEVELS
    # forecaster -> (rows of `predictions`, Q) quantiles of the cumulative log return
    quantiles: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    baselines: dict[str, BaselineForecaster] = field(default_factory=dict, repr=False)  # fitted, servable
    # the risk desk's backtests (`risk.tail_backtests`) of every distribution forecaster, level and step
    tails: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(TAIL_COLUMNS)), repr=False)
    # Diebold-Mariano/HAC comparisons of each one's pinball loss with garch, ewma and the champion
    comparisons: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(COMPARISON_COLUMNS)))
    # forecaster -> its point forecast's squared error against naive's, DM/HAC (t > 0: better than naive)
    point_tests: dict[str, DieboldMarianoResult] = field(default_factory=dict)
    horizon: int = 1

    def versus(self, name: str, reference: str, score: str = "pinball") -> DieboldMarianoResult:
        """`name` against `reference` on `score` (a per-forecast loss of `metrics.point_terms` or
        `distribution_terms`), per base day, with a Newey-West variance: t > 0 when `name` scores lower."""
        loss = {
            n: score_terms(self.predictions, COLUMN[n], self.quantiles.get(n), self.levels)[
                "se" if score == "rmse" else score
            ]
            for n in (name, reference)
        }
        return dm_test(loss[reference], loss[name], self.predictions["base_date"], self.horizon)

    def servable(self, name: str, gru: Forecaster) -> Forecaster | BaselineForecaster | BlendForecaster:
        """The forecaster `name` as it would serve: the GRU evaluated, a fitted baseline, or the two blended."""
        if name == "model":
            return gru
        if name == BLEND:
            return BlendForecaster(gru, self.baselines["garch"])
        return self.baselines[name]

    def comparison(self, name: str, reference: str, horizon: int | str = "all") -> dict | None:
        """The row of `comparisons` for `name` against `reference` at a step ("all": every step); None if absent."""
        c = self.comparisons
        rows = c[(c["forecaster"] == name) & (c["reference"] == reference) & (c["horizon"].astype(str) == str(horizon))]
        return None if rows.empty else rows.iloc[0].to_dict()

    def table(self, scopes: list[tuple[str, dict]] | None = None) -> str:
        """Markdown metrics table (overall by default): one row per scope and forecaster."""
        keys = [k for k in TABLE_METRICS if any(k in m for m in self.metrics.values())]
        lines = ["| scope | forecaster | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
        for scope, by_name in scopes or [("all", self.metrics)]:
            for name, m in by_name.items():
                lines.append(f"| {scope} | {name} | " + " | ".join(_fmt(m.get(k)) for k in keys) + " |")
        return "\n".join(lines)

    def rows(self) -> list[dict]:
        """Overall, per horizon step and per ticker as flat records (for CSV and the MLflow table)."""
        scopes = [("all", self.metrics)] + sorted(self.per_horizon.items()) + sorted(self.per_ticker.items())
        return [{"scope": s, "forecaster": n, **m} for s, by_name in scopes for n, m in by_name.items()]

    def versus_rivals(self) -> list[str]:
        """The GRU against garch and ewma, overall and ticker by ticker (`rival_lines`)."""
        t = {r: float(row["t"]) for r in RIVALS if (row := self.comparison("model", r)) is not None}
        return rival_lines(self.metrics, self.per_ticker, t)

    @property
    def garch_fallbacks(self) -> dict[str, str]:
        """Tickers the garch baseline served EWMA for, and why its fit failed."""
        garch = self.baselines.get("garch")
        return {} if garch is None else dict(garch.spec.fallback)

    def ticker_ranking(self) -> pd.Series:
        """Tickers, best first, by the model's skill (`ticker_skill`)."""
        return rank_tickers(self.per_ticker)

    def ticker_table(self) -> pd.DataFrame:
        """One row per ticker and forecaster with every metric (NaN where a forecaster has none)."""
        rows = [{"ticker": t, "forecaster": n, **m} for t, by in sorted(self.per_ticker.items()) for n, m in by.items()]
        return pd.DataFrame(rows, columns=["ticker", "forecaster", *METRIC_KEYS])

    def prediction_frame(self) -> pd.DataFrame:
        """The test predictions with the model's quantiles in price units (what test_predictions.parquet holds)."""
        preds = self.predictions.rename(columns={"target_date": "date"})
        keep = ["ticker", "date", "horizon", "base_date", "base_price", "forecast", "actual"]
        keep += [COLUMN[n] for n in (*POINT_BASELINES, CHAMPION) if COLUMN[n] in preds]
        out = preds[keep].copy()
        if "model" in self.quantiles:
            q_price = out["base_price"].to_numpy()[:, None] * np.exp(self.quantiles["model"])  # (rows, Q)
            for k, col in enumerate(quantile_columns(self.levels)):
                out[col] = q_price[:, k]
        return out

    def chart_tickers(self, config: EvaluateConfig) -> list[str]:
        """The N best and N worst tickers by the model's skill, then any the user named (that were evaluated)."""
        ranked = list(self.ticker_ranking().index)
        n = config.fan_charts
        chosen = ranked[:n] + ranked[max(n, len(ranked) - n) :]
        chosen += [t for t in config.fan_chart_tickers if t in self.per_ticker and t not in chosen]
        return chosen

    def report_scopes(self, config: EvaluateConfig) -> list[tuple[str, dict]]:
        """Overall, then the best and worst tickers (every forecaster): what a reader looks at first."""
        ranked = list(self.ticker_ranking().index)
        n = max(config.fan_charts, 1)
        shown = ranked[:n] + [t for t in ranked[-n:] if t not in ranked[:n]]
        return [("all", self.metrics)] + [(t, self.per_ticker[t]) for t in shown]


def _fmt(v) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.4f}"


@dataclass(frozen=True)
class TestSplit:
    """The test windows of a window dataset and what scoring them needs from its manifest."""

    __test__ = False  # not a pytest test class

    x: np.ndarray = field(repr=False)  # (N, L, F) scaled features
    index: pd.DataFrame = field(repr=False)  # per window: ticker, base_date, base_price
    horizon: int
    price_column: str
    tickers: tuple[str, ...]
    train_end: np.datetime64  # the last day of the training period (MASE scale, static quantiles)
    val_end: np.datetime64  # the last day of the validation period (the GARCH fit)


def test_split(dataset) -> TestSplit:
    """Read a window dataset's test split (`dataset`: the window stage's WindowDataset)."""
    x, _, index = read_split(dataset, "test")
    return TestSplit(
        x,
        index,
        dataset.spec.horizon,
        dataset.price_column,
        tuple(dataset.manifest["tickers"]),
        np.datetime64(dataset.manifest["split_dates"]["train_end"], "ns"),
        np.datetime64(dataset.manifest["split_dates"]["val_end"], "ns"),
    )


test_split.__test__ = False  # type: ignore[attr-defined]  # not a pytest test function; mypy knows no function attributes


def ticker_histories(prices: pd.DataFrame, split: TestSplit) -> dict[str, pd.DataFrame]:
    """Each windowed ticker's rows as the window stage saw them: price column present, sorted by date."""
    col = split.price_column
    frame = prices.dropna(subset=[col])
    wanted = set(split.tickers)
    return {
        str(t): g.sort_values("date").reset_index(drop=True)[["date", col]]
        for t, g in frame.groupby("ticker", sort=True)
        if str(t) in wanted
    }


def ticker_runs(tickers: pd.Series) -> dict[str, slice]:
    """Each ticker's rows of a window index: one contiguous run per ticker, the dataset being in ticker order.

    Found in one pass over the column (run boundaries of its codes), not by a scan of it per ticker.
    """
    codes, names = pd.factorize(tickers)
    starts = np.flatnonzero(np.diff(codes, prepend=-1))  # (runs,) first row of each run
    ends = np.r_[starts[1:], len(codes)]
    runs = {str(names[codes[a]]): slice(int(a), int(b)) for a, b in zip(starts, ends)}
    if len(runs) != len(starts):
        raise ValueError(
            "a ticker's test windows are not one contiguous run: the window dataset is not in ticker order"
        )
    return runs


def model_levels(forecaster) -> tuple[float, ...]:
    return tuple(getattr(forecaster.spec, "quantiles", QUANTILE_LEVELS))


def predict_test_split(
    forecaster: Forecaster, dataset, prices: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, BaselineForecaster]]:
    """One row per test window and horizon step: forecasts, actual and the baselines, in price units.

    Also returns each distribution forecaster's (rows, Q) log-return quantiles and the fitted,
    servable baselines. Baselines only read prices up to each window's base date; MASE's scale and
    the static quantiles come from each ticker's training period (the rows the scaler was fit on).
    """
    split = test_split(dataset)
    horizon = split.horizon
    levels = model_levels(forecaster)
    cum_q = forecaster.predict_quantiles(split.x)  # (N, H, Q)
    # the point forecast is the median, as the served model's forecast_close (one pass of the network)
    cum = cum_q[:, :, median_index(levels)]  # (N, H)
    col = split.price_column
    runs = ticker_runs(split.index["ticker"])
    base_dates = split.index["base_date"].to_numpy("datetime64[ns]")  # (N,)
    frames = []
    dist: dict[str, list[np.ndarray]] = {
        name: [] for name in ("model", *DISTRIBUTION_BASELINES)
    }  # name -> (rows, Q) parts
    histories, train_rows, garch_fits = {}, {}, {}
    for ticker, hist in ticker_histories(prices, split).items():
        if ticker not in runs:
            continue
        rows = runs[ticker]  # a slice: the ticker's test windows, in date order
        p = hist[col].to_numpy(np.float64)
        dates = hist["date"].to_numpy("datetime64[ns]")
        wanted = base_dates[rows]
        base_idx = np.minimum(np.searchsorted(dates, wanted), len(dates) - 1)  # (n,)
        if not np.array_equal(dates[base_idx], wanted) or base_idx.max() + horizon >= len(dates):
            raise ValueError(f"the prices given for {ticker!r} are not the ones its test windows were built from")
        # the ticker's days in the training period: a prefix, the dates being sorted
        n_train = int(np.searchsorted(dates, split.train_end, side="right"))
        histories[ticker], train_rows[ticker] = p, n_train
        # GARCH is fit on the training and validation periods: the data every other forecaster learnt from
        garch_fits[ticker] = fit_garch(p, int(np.searchsorted(dates, split.val_end, side="right")) - 1)
        steps = np.tile(np.arange(1, horizon + 1), len(wanted))  # (n*H,)
        b = np.repeat(base_idx, horizon)  # (n*H,)
        frames.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "base_date": dates[b],
                    "target_date": dates[b + steps],
                    "horizon": steps,
                    "base_price": p[b],
                    "forecast": (p[base_idx][:, None] * np.exp(cum[rows])).reshape(-1),
                    "actual": p[b + steps],
                    "naive": p[b],
                    "seasonal_naive": seasonal_naive_forecast(p, b, steps),
                    "drift": drift_forecast(p, b, steps),
                    "mase_scale": naive_scale(p[:n_train]),
                }
            )
        )
        dist["model"].append(cum_q[rows].reshape(-1, len(levels)))  # (n*H, Q)
        for name in DISTRIBUTION_BASELINES:
            q = baseline_quantiles(name, p, base_idx, horizon, levels, n_train - 1, garch_fits[ticker])  # (n, H, Q)
            dist[name].append(q.reshape(-1, len(levels)))
    predictions = pd.concat(frames, ignore_index=True)
    quantiles = {name: np.concatenate(parts) for name, parts in dist.items()}
    baselines = {
        name: BaselineForecaster.fit(name, histories, train_rows, horizon, levels, col, garch_fits)
        for name in DISTRIBUTION_BASELINES
    }
    return predictions, quantiles, baselines


def score_champion(
    model, prices: pd.DataFrame, predictions: pd.DataFrame, levels
) -> tuple[np.ndarray, np.ndarray | None]:
    """The champion's point forecasts (rows,) and quantiles (rows, Q) for exactly the test windows.

    Matched on ticker, base date and horizon: the champion sees the raw prices and builds its own
    windows, so one with another lookback or scaler is still compared on the same target days.
    Quantiles are None when the champion gives none at these levels.
    """
    tickers = predictions["ticker"].unique()
    backtest = model.predict(prices[prices["ticker"].isin(tickers)], params={"all_dates": True})
    keyed = backtest.set_index(["ticker", "base_date", "horizon"])
    keys = pd.MultiIndex.from_frame(predictions[["ticker", "base_date", "horizon"]])
    base = predictions["base_price"].to_numpy(np.float64)  # (rows,) in the evaluation's price
    # the champion prices its forecasts from its own base price (the input's close, since round 5): its
    # returns are what compare, so read them against that base, and the point forecast in the evaluation's price
    own = keyed["base_price"].reindex(keys).to_numpy(np.float64) if "base_price" in keyed else base  # (rows,)
    point = base * keyed["forecast_close"].reindex(keys).to_numpy(np.float64) / own
    qcols = quantile_columns(levels)
    if not set(qcols) <= set(keyed.columns):
        return point, None
    q_price = keyed[qcols].reindex(keys).to_numpy(np.float64)  # (rows, Q)
    return point, np.log(q_price / own[:, None])


def failure_reason(exc: BaseException) -> str:
    """Why a champion is not compared, when loading or running it raised: one line naming the cause."""
    return f"could not be loaded or run ({type(exc).__name__}): {cause_line(exc)}"


def add_champion(
    champion: Champion, prices: pd.DataFrame, predictions: pd.DataFrame, quantiles: dict, levels
) -> str | None:
    """Score the champion into `predictions` / `quantiles`; -> None, or why it is not compared.

    A champion that could not be loaded, raises, or cannot forecast every test window with quantiles
    is left out: training never fails because of the champion, and the comparison stays fair.
    """
    if champion.error is not None:
        return champion.error
    lacking = [c for c in champion.reads if c not in prices.columns or prices[c].isna().all()]
    if lacking:
        return f"reads columns this data lacks: {', '.join(lacking)}"
    try:
        point, q = score_champion(champion.model, prices, predictions, levels)
    except Exception as exc:  # noqa: BLE001 - any failure of someone else's model is a reason to skip it
        return failure_reason(exc)
    if not np.isfinite(point).all():
        return f"forecasts only {int(np.isfinite(point).sum())} of the {len(point)} test forecasts"
    if q is None or not np.isfinite(q).all():
        return f"gives no quantiles at the levels {list(levels)} for every test forecast"
    predictions[COLUMN[CHAMPION]] = point
    quantiles[CHAMPION] = q
    return None


def metric_tables(
    predictions: pd.DataFrame, names: list[str], quantiles: dict[str, np.ndarray] | None = None, levels=QUANTILE_LEVELS
) -> tuple[dict, dict, dict]:
    """Overall, per ticker and per horizon step ("h1", "h2", ...): forecaster -> metric -> value."""
    return grouped_metrics(predictions, {n: COLUMN[n] for n in names}, quantiles or {}, levels)


def usable_baselines(predictions: pd.DataFrame, quantiles: dict[str, np.ndarray]) -> list[str]:
    """A baseline is compared only where it is defined for every test forecast (fair or not at all)."""
    point = [b for b in POINT_BASELINES if predictions[COLUMN[b]].notna().all()]
    return point + [b for b in DISTRIBUTION_BASELINES if np.isfinite(quantiles[b]).all()]


def evaluate_forecaster(
    forecaster: Forecaster, dataset, prices: pd.DataFrame, champion: Champion | None = None, cpu_threads: int = 0
) -> Evaluation:
    """Score `forecaster`, the usable baselines and `champion` (None: there is none) on `dataset`'s test split.

    The networks run under `cpu_threads` intra-op threads (0: torch's setting), as training does.
    """
    with intra_op_threads(torch.device("cpu"), cpu_threads):
        predictions, quantiles, fitted = predict_test_split(forecaster, dataset, prices)
    levels = model_levels(forecaster)
    names = ["model"] + usable_baselines(predictions, quantiles)
    quantiles = {n: q for n, q in quantiles.items() if n in names}
    if "garch" in names:  # the GRU and garch averaged: a candidate of its own
        quantiles[BLEND] = blend_quantiles(quantiles["model"], quantiles["garch"])
        predictions[COLUMN[BLEND]] = predictions["base_price"] * np.exp(quantiles[BLEND][:, median_index(levels)])
        names.append(BLEND)
    champion_error = None
    if champion is not None:
        with intra_op_threads(torch.device("cpu"), cpu_threads):
            champion_error = add_champion(champion, prices, predictions, quantiles, levels)
        if champion_error is None:
            names.append(CHAMPION)
    overall, per_ticker, per_horizon = metric_tables(predictions, names, quantiles, levels)
    tails, comparisons, point_tests = risk_tables(predictions, names, quantiles, levels, dataset.spec.horizon)
    return Evaluation(
        metrics=overall,
        per_ticker=per_ticker,
        per_horizon=per_horizon,
        skill=overall["model"]["skill"],
        n_windows=int(len(predictions)),
        champion_version=None if champion is None else champion.version,
        predictions=predictions,
        champion_error=champion_error,
        levels=levels,
        quantiles=quantiles,
        baselines={n: b for n, b in fitted.items() if n in names},
        tails=tails,
        comparisons=comparisons,
        point_tests=point_tests,
        horizon=dataset.spec.horizon,
    )


def outcomes(predictions: pd.DataFrame) -> np.ndarray:
    """Each forecast's outcome as the distribution scores read it: the cumulative log return in percent."""
    return 100.0 * np.log(predictions["actual"].to_numpy(np.float64) / predictions["base_price"].to_numpy(np.float64))


def risk_tables(
    predictions: pd.DataFrame, names: list[str], quantiles: dict[str, np.ndarray], levels, horizon: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, DieboldMarianoResult]]:
    """The risk desk's view of the same forecasts: tail backtests (Kupiec, Christoffersen) of every
    distribution forecaster, its pinball against `RIVALS` and the champion (Diebold-Mariano, Newey-West),
    and each point forecast's squared error against naive's (the same test)."""
    index = predictions[["ticker", "base_date", "horizon"]]
    y = outcomes(predictions)
    scored = {n: 100.0 * quantiles[n] for n in names if n in quantiles}  # percent, as the scores
    tails = tail_backtests(index, y, scored, levels)
    comparisons = pinball_comparisons(index, y, scored, levels, (*RIVALS, CHAMPION))
    actual = predictions["actual"].to_numpy(np.float64)
    naive_se = np.square(predictions["naive"].to_numpy(np.float64) - actual)
    point_tests = {
        n: dm_test(
            naive_se, np.square(predictions[COLUMN[n]].to_numpy(np.float64) - actual), index["base_date"], horizon
        )
        for n in names
        if COLUMN[n] != "naive"
    }
    return tails, comparisons, point_tests
