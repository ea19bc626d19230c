"""Evaluate: the model, the baselines and the current champion on the same test windows.

Every forecaster is scored on exactly the forecasts the model makes on the test split (same ticker,
base date and horizon step):

- point forecasts, in price units: the naive "tomorrow = today", the seasonal naive "same day last
  week", the drift (random walk with the past average change);
- distributions, as quantiles of the cumulative log return: `static_quantile`, `rolling_quantile`
  and `ewma` (see `tickerflow_model.baselines`), scored in percent log return by pinball loss,
  interval coverage, width and Winkler score (see `tickerflow_model.metrics`);
- the registry's champion, when there is one and it can be loaded and scored; when it cannot, why
  is recorded (on the run and on its version) and the evaluation goes on without it.

All metrics (overall, per ticker, per horizon step) come from one grouped mean over per-forecast
terms, whatever the number of tickers; the MLflow run gets a bounded number of metric keys and the
per-ticker figures as a table.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from tickerflow.tasks.storage import stable_hash
from tickerflow.tasks.tracking import run_url, use_tracking
from tickerflow_model.splits import SplitDates, training_rows
from tickerflow_model.window_dataset import WindowConfig, WindowDataset, build_window_dataset, read_split
from tickerflow_model.baselines import DISTRIBUTION_BASELINES, BaselineForecaster, baseline_quantiles
from tickerflow_model.forecaster import Forecaster
from tickerflow_model.metrics import DISTRIBUTION_NAMES, METRIC_NAMES, drift_forecast, naive_scale, seasonal_naive_forecast
from tickerflow_model.quantiles import QUANTILE_LEVELS, median_index, quantile_columns
from tickerflow_model.scoring import grouped_metrics

CHAMPION = "champion"
# forecaster name -> column of the predictions frame holding its point forecast
COLUMN = {
    "model": "forecast", "naive": "naive", "seasonal_naive": "seasonal_naive", "drift": "drift", "champion": "champion",
    **{b: "naive" for b in DISTRIBUTION_BASELINES},  # a distribution baseline's point forecast is the last price
}
BASELINES = ("naive", "seasonal_naive", "drift")  # point baselines
REPORT_KEYS = METRIC_NAMES + ("skill",)
ALL_KEYS = REPORT_KEYS + DISTRIBUTION_NAMES
# per horizon step, the MLflow run gets these for the model only (the full table is an artifact)
HORIZON_KEYS = ("rmse", "skill", "pinball", "coverage_80", "coverage_90", "width_80", "width_90")
UNSCORED_TAG = "champion_scoring_error"  # set on a champion version that could not be loaded or scored


@dataclass(frozen=True)
class EvaluateConfig:
    """What the evaluation reports: fan charts for the `fan_charts` best and worst tickers and the named ones."""

    fan_charts: int = 5
    fan_chart_tickers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.fan_charts, bool) or not isinstance(self.fan_charts, int) or not 0 <= self.fan_charts <= 100:
            raise ValueError(f"fan_charts must be an integer in [0, 100], got {self.fan_charts!r}")
        if isinstance(self.fan_chart_tickers, str) or not all(isinstance(t, str) for t in self.fan_chart_tickers):
            raise ValueError(f"fan_chart_tickers must be a list of ticker symbols, got {self.fan_chart_tickers!r}")


@dataclass
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

    def table(self, scopes: list[tuple[str, dict]] | None = None) -> str:
        """Markdown metrics table (overall by default): one row per scope and forecaster."""
        keys = [k for k in ALL_KEYS if any(k in m for m in self.metrics.values())]
        lines = ["| scope | forecaster | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
        for scope, by_name in scopes or [("all", self.metrics)]:
            for name, m in by_name.items():
                lines.append(f"| {scope} | {name} | " + " | ".join(_fmt(m.get(k)) for k in keys) + " |")
        return "\n".join(lines)

    def rows(self) -> list[dict]:
        """Overall, per horizon step and per ticker as flat records (for CSV and the MLflow table)."""
        scopes = [("all", self.metrics)] + sorted(self.per_horizon.items()) + sorted(self.per_ticker.items())
        return [{"scope": s, "forecaster": n, **m} for s, by_name in scopes for n, m in by_name.items()]

    def ticker_ranking(self) -> pd.Series:
        """Tickers, best first, by the model's skill: pinball vs static_quantile when both exist, else RMSE vs naive."""
        def score(by: dict) -> float:
            model = by.get("model", {})
            static = by.get("static_quantile", {})
            if "pinball" in model and static.get("pinball", 0) > 0:
                return 1.0 - model["pinball"] / static["pinball"]
            return model.get("skill", np.nan)

        return pd.Series({t: score(by) for t, by in self.per_ticker.items()}, dtype=float).sort_values(ascending=False)


def _fmt(v) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.4f}"


def split_dates_of(dataset: WindowDataset) -> SplitDates:
    """The calendar cut the dataset was split with (the manifest stores it as ISO days)."""
    cut = dataset.manifest["split_dates"]
    return SplitDates(
        np.datetime64(cut["train_end"], "ns"), np.datetime64(cut["val_end"], "ns"), int(cut["purge_gap_business_days"])
    )


def ticker_histories(prices: pd.DataFrame, dataset: WindowDataset) -> dict[str, pd.DataFrame]:
    """Each windowed ticker's rows as the window stage saw them: price column present, sorted by date."""
    col = dataset.price_column
    frame = prices.dropna(subset=[col])
    wanted = set(dataset.manifest["tickers"])
    return {
        str(t): g.sort_values("date").reset_index(drop=True)[["date", col]]
        for t, g in frame.groupby("ticker", sort=True)
        if str(t) in wanted
    }


def model_levels(forecaster) -> tuple[float, ...]:
    return tuple(getattr(forecaster.spec, "quantiles", QUANTILE_LEVELS))


def predict_test_split(
    forecaster: Forecaster, dataset: WindowDataset, prices: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, BaselineForecaster]]:
    """One row per test window and horizon step: forecasts, actual and the baselines, in price units.

    Also returns each distribution forecaster's (rows, Q) log-return quantiles and the fitted,
    servable baselines. Baselines only read prices up to each window's base date; MASE's scale and
    the static quantiles come from each ticker's training period (the rows the scaler was fit on).
    """
    x, _, index = read_split(dataset, "test")
    horizon = dataset.spec.horizon
    levels = model_levels(forecaster)
    cum_q = forecaster.predict_quantiles(x)  # (N, H, Q)
    # the point forecast is the median, as the served model's forecast_close (one pass of the network)
    cum = cum_q[:, :, median_index(levels)]  # (N, H)
    col = dataset.price_column
    cut = split_dates_of(dataset)
    frames, dist = [], {name: [] for name in ("model", *DISTRIBUTION_BASELINES)}
    histories, train_rows = {}, {}
    for ticker, hist in ticker_histories(prices, dataset).items():
        rows = np.flatnonzero(index["ticker"].to_numpy() == ticker)
        if len(rows) == 0:
            continue
        p = hist[col].to_numpy(np.float64)
        dates = hist["date"].to_numpy("datetime64[ns]")
        wanted = index["base_date"].to_numpy("datetime64[ns]")[rows]
        base_idx = np.minimum(np.searchsorted(dates, wanted), len(dates) - 1)  # (n,)
        if not np.array_equal(dates[base_idx], wanted) or base_idx.max() + horizon >= len(dates):
            raise ValueError(f"the prices given for {ticker!r} are not the ones its test windows were built from")
        n_train = training_rows(hist, cut)
        histories[ticker], train_rows[ticker] = p, n_train
        steps = np.tile(np.arange(1, horizon + 1), len(rows))  # (n*H,)
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
            q = baseline_quantiles(name, p, base_idx, horizon, levels, fit_end=n_train - 1)  # (n, H, Q)
            dist[name].append(q.reshape(-1, len(levels)))
    predictions = pd.concat(frames, ignore_index=True)
    quantiles = {name: np.concatenate(parts) for name, parts in dist.items()}
    baselines = {
        name: BaselineForecaster.fit(name, histories, train_rows, horizon, levels, col) for name in DISTRIBUTION_BASELINES
    }
    return predictions, quantiles, baselines


def score_champion(
    champion_uri: str, prices: pd.DataFrame, predictions: pd.DataFrame, levels
) -> tuple[np.ndarray, np.ndarray | None]:
    """The champion's point forecasts (rows,) and quantiles (rows, Q) for exactly the test windows.

    Matched on ticker, base date and horizon: the champion sees the raw prices and builds its own
    windows, so one with another lookback or scaler is still compared on the same target days.
    Quantiles are None when the champion gives none at these levels.
    """
    model = mlflow.pyfunc.load_model(champion_uri)
    tickers = predictions["ticker"].unique()
    backtest = model.predict(prices[prices["ticker"].isin(tickers)], params={"all_dates": True})
    keyed = backtest.set_index(["ticker", "base_date", "horizon"])
    keys = pd.MultiIndex.from_frame(predictions[["ticker", "base_date", "horizon"]])
    point = keyed["forecast_close"].reindex(keys).to_numpy(np.float64)
    qcols = quantile_columns(levels)
    if not set(qcols) <= set(keyed.columns):
        return point, None
    q_price = keyed[qcols].reindex(keys).to_numpy(np.float64)  # (rows, Q)
    return point, np.log(q_price / predictions["base_price"].to_numpy()[:, None])


def metric_tables(
    predictions: pd.DataFrame, names: list[str], quantiles: dict[str, np.ndarray] | None = None, levels=QUANTILE_LEVELS
) -> tuple[dict, dict, dict]:
    """Overall, per ticker and per horizon step ("h1", "h2", ...): forecaster -> metric -> value."""
    return grouped_metrics(predictions, {n: COLUMN[n] for n in names}, quantiles or {}, levels)


def usable_baselines(predictions: pd.DataFrame, quantiles: dict[str, np.ndarray]) -> list[str]:
    """A baseline is compared only where it is defined for every test forecast (fair or not at all)."""
    point = [b for b in BASELINES if predictions[COLUMN[b]].notna().all()]
    return point + [b for b in DISTRIBUTION_BASELINES if np.isfinite(quantiles[b]).all()]


def evaluate_forecaster(
    forecaster: Forecaster, dataset: WindowDataset, prices: pd.DataFrame, champion_uri: str | None
) -> Evaluation:
    """Plain function behind the task."""
    predictions, quantiles, fitted = predict_test_split(forecaster, dataset, prices)
    levels = model_levels(forecaster)
    names = ["model"] + usable_baselines(predictions, quantiles)
    quantiles = {n: q for n, q in quantiles.items() if n in names}
    champion_error = None
    if champion_uri:
        champion_error = add_champion(champion_uri, prices, predictions, quantiles, levels)
        if champion_error is None:
            names.append("champion")
    overall, per_ticker, per_horizon = metric_tables(predictions, names, quantiles, levels)
    return Evaluation(
        metrics=overall,
        per_ticker=per_ticker,
        per_horizon=per_horizon,
        skill=overall["model"]["skill"],
        n_windows=int(len(predictions)),
        predictions=predictions,
        champion_error=champion_error,
        levels=levels,
        quantiles=quantiles,
        baselines={n: b for n, b in fitted.items() if n in names},
    )


def add_champion(
    champion_uri: str, prices: pd.DataFrame, predictions: pd.DataFrame, quantiles: dict, levels
) -> str | None:
    """Score the champion into `predictions` / `quantiles`; -> None, or why it is not compared.

    A champion that cannot be loaded, raises, or cannot forecast every test window with quantiles
    is left out: training never fails because of the champion, and the comparison stays fair.
    """
    try:
        point, q = score_champion(champion_uri, prices, predictions, levels)
    except Exception as exc:  # noqa: BLE001 - any failure of someone else's model is a reason to skip it
        return f"could not be loaded or run: {type(exc).__name__}: {str(exc)[:300]}"
    if not np.isfinite(point).all():
        return f"forecasts only {int(np.isfinite(point).sum())} of the {len(point)} test forecasts"
    if q is None or not np.isfinite(q).all():
        return f"gives no quantiles at the levels {list(levels)} for every test forecast"
    predictions["champion"] = point
    quantiles["champion"] = q
    return None


def safe_metric_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def mlflow_metrics(result: Evaluation) -> list[mlflow.entities.Metric]:
    """A bounded set of keys, whatever the number of tickers.

    `test_<forecaster>_<metric>` overall, and `test_h<k>_model_<metric>` per horizon step (when there
    is more than one) for HORIZON_KEYS; per-ticker figures go to a table artifact instead.
    """
    out = [mlflow.entities.Metric("test_skill_vs_naive", result.skill, 0, 0)]
    scopes = [("", result.metrics)]
    if len(result.per_horizon) > 1:
        scopes += [(f"{k}_", {"model": {m: v for m, v in by["model"].items() if m in HORIZON_KEYS}}) for k, by in result.per_horizon.items()]
    for prefix, by_name in scopes:
        for name, m in by_name.items():
            out += [
                mlflow.entities.Metric(safe_metric_key(f"test_{prefix}{name}_{k}"), float(v), 0, 0)
                for k, v in m.items()
                if np.isfinite(v)
            ]
    return out


def ticker_table(result: Evaluation) -> pd.DataFrame:
    """One row per ticker and forecaster with every metric (NaN where a forecaster has none)."""
    rows = [{"ticker": t, "forecaster": n, **m} for t, by in sorted(result.per_ticker.items()) for n, m in by.items()]
    return pd.DataFrame(rows, columns=["ticker", "forecaster", *ALL_KEYS])


def chart_tickers(result: Evaluation, config: EvaluateConfig) -> list[str]:
    """The N best and N worst tickers by the model's skill, then any the user named (that were evaluated)."""
    ranked = list(result.ticker_ranking().index)
    n = config.fan_charts
    chosen = ranked[:n] + ranked[max(n, len(ranked) - n):]
    chosen += [t for t in config.fan_chart_tickers if t in result.per_ticker and t not in chosen]
    return chosen


def prediction_frame(result: Evaluation) -> pd.DataFrame:
    """The test predictions with the model's quantiles in price units (what test_predictions.parquet holds)."""
    preds = result.predictions.rename(columns={"target_date": "date"})
    keep = ["ticker", "date", "horizon", "base_date", "base_price", "forecast", "actual"]
    keep += [COLUMN[n] for n in ("naive", "seasonal_naive", "drift", "champion") if COLUMN[n] in preds]
    out = preds[keep].copy()
    if "model" in result.quantiles:
        q_price = out["base_price"].to_numpy()[:, None] * np.exp(result.quantiles["model"])  # (rows, Q)
        for k, col in enumerate(quantile_columns(result.levels)):
            out[col] = q_price[:, k]
    return out


def write_reports(result: Evaluation, folder: Path, config: EvaluateConfig = EvaluateConfig()) -> list[Path]:
    """Tables (JSON, CSV, Parquet, markdown), the test predictions, an overview and the fan charts."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "skill_vs_naive": result.skill,
        "overall": result.metrics,
        "per_horizon": result.per_horizon,
        "test_forecasts": result.n_windows,
        "champion_version": result.champion_version,
        "champion_error": result.champion_error,
        "units": "point metrics in price units; distribution scores on cumulative log returns in percent",
    }
    (folder / "metrics.json").write_text(json.dumps(payload, indent=2))
    pd.DataFrame(result.rows()).to_csv(folder / "metrics.csv", index=False)
    per_ticker = ticker_table(result)
    per_ticker.to_csv(folder / "metrics_per_ticker.csv", index=False)
    per_ticker.to_parquet(folder / "metrics_per_ticker.parquet", index=False)
    (folder / "metrics.md").write_text(result.table(report_scopes(result, config)))
    preds = prediction_frame(result)
    preds.to_parquet(folder / "test_predictions.parquet", index=False)
    plots = [overview_plot(result, folder / "overview.png")]
    # ticker symbols are data, never path fragments: only letters, digits and dashes reach a file name
    by_ticker = dict(tuple(preds.groupby("ticker")))
    for i, ticker in enumerate(chart_tickers(result, config)):
        name = f"fan_{i:03d}_{re.sub(r'[^A-Za-z0-9-]', '_', ticker)[:40]}.png"
        plots.append(fan_chart(by_ticker[ticker], ticker, result.levels, folder / name))
    return plots


def report_scopes(result: Evaluation, config: EvaluateConfig) -> list[tuple[str, dict]]:
    """Overall, then the best and worst tickers (every forecaster): what a reader looks at first."""
    ranked = list(result.ticker_ranking().index)
    n = max(config.fan_charts, 1)
    shown = ranked[:n] + [t for t in ranked[-n:] if t not in ranked[:n]]
    return [("all", result.metrics)] + [(t, result.per_ticker[t]) for t in shown]


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers and workers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fan_chart(preds: pd.DataFrame, ticker: str, levels, path: Path) -> Path:
    """Actual one-day-ahead prices with the model's median and its 50/80/90% bands, over the test period."""
    plt = _pyplot()
    d = preds[preds["horizon"] == 1].sort_values("date")
    cols = dict(zip(levels, quantile_columns(levels)))
    fig, ax = plt.subplots(figsize=(10, 4))
    for coverage, alpha in ((0.90, 0.15), (0.80, 0.25), (0.50, 0.35)):
        lo, hi = cols.get(round((1 - coverage) / 2, 4)), cols.get(round((1 + coverage) / 2, 4))
        if lo in d and hi in d:
            ax.fill_between(d["date"], d[lo], d[hi], color="tab:blue", alpha=alpha, linewidth=0, label=f"{coverage:.0%} band")
    if cols.get(0.5) in d:
        ax.plot(d["date"], d[cols[0.5]], color="tab:blue", linewidth=0.8, label="median")
    ax.plot(d["date"], d["actual"], color="black", linewidth=0.9, label="actual")
    ax.set_title(f"{ticker}: one-day-ahead forecast distribution on the test split")
    ax.set_ylabel("price")
    return _save_figure(plt, fig, ax, path)


def overview_plot(result: Evaluation, path: Path) -> Path:
    """Across tickers: the distribution of the model's skill, and the skill of each ticker, sorted."""
    plt = _pyplot()
    ranking = result.ticker_ranking().dropna()
    uses_pinball = any("pinball" in by.get("static_quantile", {}) and "pinball" in by.get("model", {}) for by in result.per_ticker.values())
    label = "pinball skill vs static_quantile" if uses_pinball else "RMSE skill vs naive"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    left.hist(ranking.to_numpy(), bins=min(40, max(5, len(ranking))), color="tab:blue")
    left.axvline(0.0, color="black", linewidth=0.8)
    left.set_xlabel(label)
    left.set_ylabel("tickers")
    left.set_title(f"model skill across {len(ranking)} tickers")
    right.plot(np.arange(len(ranking)), ranking.to_numpy(), marker="." if len(ranking) <= 200 else None, color="tab:blue")
    right.axhline(0.0, color="black", linewidth=0.8)
    right.set_xlabel("tickers, best to worst" + ("" if len(ranking) > 30 else ": " + " ".join(ranking.index)))
    right.set_ylabel(label)
    right.set_title("skill by ticker")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _save_figure(plt, fig, ax, path: Path) -> Path:
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def markdown_report(result: Evaluation, run_id: str, config: EvaluateConfig = EvaluateConfig()) -> str:
    if "champion" in result.metrics:
        champion = f" The current champion (v{result.champion_version}) was scored on the same windows."
    elif result.champion_error:
        champion = f" The current champion (v{result.champion_version}) was not compared: {result.champion_error}."
    else:
        champion = ""
    return (
        f"# Test metrics\n\nSkill vs naive: **{result.skill:+.4f}** "
        f"(1 - RMSE_model / RMSE_naive) over {result.n_windows} forecasts.{champion}\n\n"
        "Point metrics in price units; distribution scores (pinball, coverage, width, Winkler) on cumulative "
        "log returns in percent. Overall, then the best and worst tickers by the model's skill "
        f"(all {len(result.per_ticker)} tickers: `evaluation/metrics_per_ticker.csv` in the MLflow run).\n\n"
        f"{result.table(report_scopes(result, config))}\n\n"
        f"MLflow run: [{run_id}]({run_url(run_id)})\n"
    )


def champion_uri_for(model_name: str) -> tuple[str | None, str | None]:
    client = use_tracking()
    try:
        mv = client.get_model_version_by_alias(model_name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None, None
    # pinned to the version: the alias may move while this run is still scoring it
    return f"models:/{model_name}/{mv.version}", mv.version


@task(name="evaluate")
def evaluate(
    forecaster: Forecaster, dataset: WindowDataset, prices: pd.DataFrame, model_name: str, run_id: str,
    config: EvaluateConfig = EvaluateConfig(),
) -> Evaluation:
    logger = get_run_logger()
    champion_uri, champion_version = champion_uri_for(model_name)
    result = evaluate_forecaster(forecaster, dataset, prices, champion_uri)
    result.champion_version = champion_version
    client = use_tracking()
    if result.champion_error:
        logger.warning("champion v%s is not compared: %s", champion_version, result.champion_error)
        client.set_tag(run_id, "champion_not_compared", f"v{champion_version}: {result.champion_error}"[:5000])
        client.set_model_version_tag(model_name, champion_version, UNSCORED_TAG, result.champion_error[:5000])
    client.log_batch(run_id, metrics=mlflow_metrics(result))  # bounded: well under log_batch's 1000
    with tempfile.TemporaryDirectory() as tmp:
        write_reports(result, Path(tmp), config)
        client.log_artifacts(run_id, tmp, "evaluation")
    # the MLflow UI shows a logged table in the run's evaluation view
    client.log_table(run_id, ticker_table(result).astype({k: float for k in ALL_KEYS}), "evaluation/per_ticker_table.json")
    m = result.metrics
    logger.info(
        "test split, %d forecasts: model RMSE %.4f vs naive %.4f (skill %+.4f)%s%s",
        result.n_windows, m["model"]["rmse"], m["naive"]["rmse"], result.skill,
        f"; pinball {m['model']['pinball']:.4f}" if "pinball" in m["model"] else "",
        f"; champion v{champion_version} RMSE {m['champion']['rmse']:.4f}" if "champion" in m else "",
    )
    create_markdown_artifact(
        key="test-metrics",
        markdown=markdown_report(result, run_id, config),
        description="Model vs baselines (and champion) on the test split",
    )
    return result


# ---- walk-forward backtest ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BacktestConfig:
    """Walk-forward backtest: `folds` test periods of `step` trading days each, the last ending on the last day.

    Each fold trains on an expanding history (train + validation, split as the window config says)
    that ends `step` days before the fold's last day; windows, scaler and model are rebuilt from that
    history alone. `folds = 0` turns the backtest off.
    """

    folds: int = 0
    step: int = 63  # about a quarter of trading days

    def __post_init__(self) -> None:
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 0:
            raise ValueError(f"folds must be an integer >= 0, got {self.folds!r}")
        if isinstance(self.step, bool) or not isinstance(self.step, int) or self.step < 2:
            raise ValueError(f"step must be an integer >= 2 (trading days), got {self.step!r}")


@dataclass
class Fold:
    index: int
    cutoff: pd.Timestamp  # last day any part of this fold's model, scaler or windows may see
    test_end: pd.Timestamp
    evaluation: Evaluation
    forecaster: Forecaster = field(repr=False)


@dataclass
class Backtest:
    folds: list[Fold]
    metrics: dict[str, dict[str, float]]  # pooled over every fold's test forecasts
    per_ticker: dict[str, dict[str, dict[str, float]]]

    def fold_rows(self) -> list[dict]:
        return [
            {"fold": f.index, "cutoff": str(f.cutoff.date()), "test_end": str(f.test_end.date()),
             "forecasts": f.evaluation.n_windows, **{f"{n}_rmse": m["rmse"] for n, m in f.evaluation.metrics.items()},
             "skill": f.evaluation.skill}
            for f in self.folds
        ]


def fold_window_config(base: WindowConfig, n_days: int, history_days: int) -> WindowConfig:
    """The window config that cuts `n_days` trading days so validation ends on day `history_days`.

    Train and validation keep the base config's proportions inside the history; the half-day
    offsets make `int(n_days * fraction)` land exactly on the wanted day counts.
    """
    n_val = max(round(history_days * base.val_fraction / (base.train_fraction + base.val_fraction)), 1)
    n_train = history_days - n_val
    return base.updated(train_fraction=(n_train + 0.5) / n_days, val_fraction=(n_val + 0.5) / n_days)


def fold_periods(days: np.ndarray, config: BacktestConfig) -> list[tuple[int, int]]:
    """(last history day index, last test day index) per fold, oldest first."""
    last = len(days) - 1
    periods = [(last - (config.folds - k) * config.step, last - (config.folds - 1 - k) * config.step) for k in range(config.folds)]
    if periods and periods[0][0] < 1:
        raise ValueError(
            f"{config.folds} folds of {config.step} days need more than {config.folds * config.step} trading days, "
            f"the data has {len(days)}"
        )
    return periods


def walk_forward(
    prices: pd.DataFrame, window_config: WindowConfig, train_config, config: BacktestConfig, source_hash: str,
    root: Path, log,
) -> Backtest:
    """Plain function behind the task: per fold, truncate, window, train, evaluate; pool the forecasts."""
    from tickerflow_model.fitting import fit_forecaster  # training is only needed when a backtest runs

    days = np.unique(prices["date"].to_numpy("datetime64[ns]"))
    folds = []
    for k, (cut_idx, end_idx) in enumerate(fold_periods(days, config)):
        # nothing after the fold's last test day exists for this fold; nothing after `cutoff` is trained on
        seen = prices[prices["date"] <= days[end_idx]]
        fold_config = fold_window_config(window_config, end_idx + 1, cut_idx + 1)
        fold_hash = stable_hash({"source": source_hash, "until": str(days[end_idx])})
        dataset = build_window_dataset(seen, fold_config, fold_hash, root)
        forecaster = fit_forecaster(dataset, train_config).forecaster
        evaluation = evaluate_forecaster(forecaster, dataset, seen, champion_uri=None)
        log.info("fold %d: history to %s, test to %s: skill vs naive %+.4f over %d forecasts",
                 k, str(days[cut_idx])[:10], str(days[end_idx])[:10], evaluation.skill, evaluation.n_windows)
        folds.append(Fold(k, pd.Timestamp(days[cut_idx]), pd.Timestamp(days[end_idx]), evaluation, forecaster))
    pooled = pd.concat([f.evaluation.predictions.assign(fold=f.index) for f in folds], ignore_index=True)
    names = [n for n in ("model", *BASELINES) if all(n in f.evaluation.metrics for f in folds)]
    overall, per_ticker, _ = metric_tables(pooled, names)
    return Backtest(folds, overall, per_ticker)


@task(name="backtest")
def backtest(
    prices: pd.DataFrame, window_config: WindowConfig, train_config, config: BacktestConfig, source_hash: str, run_id: str
) -> Backtest | None:
    """Walk-forward folds logged to the MLflow run (`backtest_fold<k>_*`, `backtest_*`) and a Prefect artifact."""
    if config.folds == 0:
        return None
    logger = get_run_logger()
    with tempfile.TemporaryDirectory() as tmp:
        result = walk_forward(prices, window_config, train_config, config, source_hash, Path(tmp), logger)
    client = use_tracking()
    metrics = [mlflow.entities.Metric("backtest_skill_vs_naive", result.metrics["model"]["skill"], 0, 0)]
    metrics += [mlflow.entities.Metric(f"backtest_{n}_{k}", float(v), 0, 0) for n, m in result.metrics.items() for k, v in m.items()]
    metrics += [mlflow.entities.Metric("backtest_fold_skill", f.evaluation.skill, 0, f.index) for f in result.folds]
    client.log_batch(run_id, metrics=metrics)
    client.log_text(run_id, pd.DataFrame(result.fold_rows()).to_csv(index=False), "evaluation/backtest_folds.csv")
    table = _markdown_rows(result.fold_rows())
    create_markdown_artifact(
        key="backtest",
        markdown=f"# Walk-forward backtest\n\nPooled skill vs naive: **{result.metrics['model']['skill']:+.4f}**\n\n{table}\n\n"
        f"MLflow run: [{run_id}]({run_url(run_id)})\n",
        description="Walk-forward folds: expanding history, windows and scaler rebuilt per fold",
    )
    return result


def _markdown_rows(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(
        ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    )
