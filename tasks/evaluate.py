"""Evaluate: the model, the baselines and the current champion on the same test windows, in prices.

Every forecaster is scored on exactly the forecasts the model makes on the test split (same ticker,
base date and horizon step): the naive "tomorrow = today", the seasonal naive "same day last week",
the drift (random walk with the past average change) and, when there is one, the registry's champion.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from tasks.storage import stable_hash
from tasks.tracking import run_url, use_tracking
from tasks.window import SplitDates, WindowConfig, WindowDataset, build_window_dataset, read_split, training_rows
from tickerflow_model.forecaster import Forecaster
from tickerflow_model.metrics import (
    METRIC_NAMES,
    drift_forecast,
    forecast_metrics,
    naive_scale,
    seasonal_naive_forecast,
    skill,
)

CHAMPION = "champion"
# forecaster name -> column of the predictions frame
COLUMN = {"model": "forecast", "naive": "naive", "seasonal_naive": "seasonal_naive", "drift": "drift", "champion": "champion"}
BASELINES = ("naive", "seasonal_naive", "drift")
REPORT_KEYS = METRIC_NAMES + ("skill",)


@dataclass
class Evaluation:
    metrics: dict[str, dict[str, float]]  # forecaster -> metric -> value, on the whole test split
    per_ticker: dict[str, dict[str, dict[str, float]]]  # ticker -> forecaster -> metric -> value
    per_horizon: dict[str, dict[str, dict[str, float]]]  # "h1".. -> forecaster -> metric -> value
    skill: float  # the model's 1 - RMSE_model / RMSE_naive
    n_windows: int
    champion_version: str | None = None
    predictions: pd.DataFrame = field(default=None, repr=False)

    def table(self) -> str:
        """Markdown metrics table: overall, per horizon step, then per ticker."""
        head = "| scope | forecaster | " + " | ".join(REPORT_KEYS) + " |"
        lines = [head, "|" + "---|" * (len(REPORT_KEYS) + 2)]
        scopes = [("all", self.metrics)] + sorted(self.per_horizon.items()) + sorted(self.per_ticker.items())
        for scope, by_name in scopes:
            for name, m in by_name.items():
                lines.append(f"| {scope} | {name} | " + " | ".join(f"{m[k]:.4f}" for k in REPORT_KEYS) + " |")
        return "\n".join(lines)

    def rows(self) -> list[dict]:
        """The same table as flat records (for CSV)."""
        scopes = [("all", self.metrics)] + sorted(self.per_horizon.items()) + sorted(self.per_ticker.items())
        return [{"scope": s, "forecaster": n, **m} for s, by_name in scopes for n, m in by_name.items()]


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


def predict_test_split(forecaster: Forecaster, dataset: WindowDataset, prices: pd.DataFrame) -> pd.DataFrame:
    """One row per test window and horizon step: forecast, actual and the baselines, in price units.

    Baselines only read prices up to each window's base date; MASE's scale comes from each
    ticker's training period (the same rows the scaler was fit on).
    """
    x, _, index = read_split(dataset, "test")
    horizon = dataset.spec.horizon
    cum = forecaster.predict_log_returns(x)  # (N, H)
    col = dataset.price_column
    cut = split_dates_of(dataset)
    frames = []
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
    return pd.concat(frames, ignore_index=True)


def score_champion(champion_uri: str, prices: pd.DataFrame, predictions: pd.DataFrame) -> pd.Series:
    """The champion's forecasts for exactly the test windows (matched on ticker, base date, horizon).

    The champion sees the raw prices and builds its own windows, so a champion with another
    lookback or scaler is still compared on the same target days.
    """
    model = mlflow.pyfunc.load_model(champion_uri)
    tickers = predictions["ticker"].unique()
    backtest = model.predict(prices[prices["ticker"].isin(tickers)], params={"all_dates": True})
    keyed = backtest.set_index(["ticker", "base_date", "horizon"])["forecast_close"]
    keys = pd.MultiIndex.from_frame(predictions[["ticker", "base_date", "horizon"]])
    return pd.Series(keyed.reindex(keys).to_numpy(), index=predictions.index)


def score_block(d: pd.DataFrame, names: list[str]) -> dict[str, dict[str, float]]:
    """Every forecaster's metrics on one block of rows, each with its skill vs naive."""
    out = {n: forecast_metrics(d[COLUMN[n]], d["actual"], d["base_price"], d["mase_scale"]) for n in names}
    for m in out.values():
        m["skill"] = skill(m["rmse"], out["naive"]["rmse"])
    return out


def metric_tables(predictions: pd.DataFrame, names: list[str]) -> tuple[dict, dict, dict]:
    """Overall, per ticker and per horizon step ("h1", "h2", ...)."""
    per_ticker = {str(t): score_block(g, names) for t, g in predictions.groupby("ticker")}
    per_horizon = {f"h{h}": score_block(g, names) for h, g in predictions.groupby("horizon")}
    return score_block(predictions, names), per_ticker, per_horizon


def usable_baselines(predictions: pd.DataFrame) -> list[str]:
    """A baseline is compared only where it is defined for every test forecast (fair or not at all)."""
    return [b for b in BASELINES if predictions[COLUMN[b]].notna().all()]


def evaluate_forecaster(
    forecaster: Forecaster, dataset: WindowDataset, prices: pd.DataFrame, champion_uri: str | None
) -> Evaluation:
    """Plain function behind the task."""
    predictions = predict_test_split(forecaster, dataset, prices)
    names = ["model"] + usable_baselines(predictions)
    if champion_uri:
        predictions["champion"] = score_champion(champion_uri, prices, predictions)
        if predictions["champion"].isna().any():
            # a champion that cannot score every window is compared on none: the comparison must be fair
            predictions = predictions.drop(columns="champion")
        else:
            names.append("champion")
    overall, per_ticker, per_horizon = metric_tables(predictions, names)
    return Evaluation(
        metrics=overall,
        per_ticker=per_ticker,
        per_horizon=per_horizon,
        skill=overall["model"]["skill"],
        n_windows=int(len(predictions)),
        predictions=predictions,
    )


def safe_metric_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def mlflow_metrics(result: Evaluation) -> list[mlflow.entities.Metric]:
    """`test_<forecaster>_<metric>`, per ticker `test_<ticker>_<forecaster>_<metric>`, per step `test_h<k>_...`."""
    out = [mlflow.entities.Metric("test_skill_vs_naive", result.skill, 0, 0)]
    scopes = [("", result.metrics)] + [(f"{k}_", v) for k, v in result.per_horizon.items()]
    scopes += [(f"{t}_", v) for t, v in result.per_ticker.items()]
    for prefix, by_name in scopes:
        for name, m in by_name.items():
            out += [
                mlflow.entities.Metric(safe_metric_key(f"test_{prefix}{name}_{k}"), float(v), 0, 0)
                for k, v in m.items()
                if np.isfinite(v)
            ]
    return out


def write_reports(result: Evaluation, folder: Path) -> list[Path]:
    """metrics.json / metrics.csv / metrics.md, test_predictions.parquet and the plots."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "skill_vs_naive": result.skill,
        "overall": result.metrics,
        "per_horizon": result.per_horizon,
        "per_ticker": result.per_ticker,
        "test_forecasts": result.n_windows,
        "champion_version": result.champion_version,
    }
    (folder / "metrics.json").write_text(json.dumps(payload, indent=2))
    pd.DataFrame(result.rows()).to_csv(folder / "metrics.csv", index=False)
    (folder / "metrics.md").write_text(result.table())
    preds = result.predictions.rename(columns={"target_date": "date"})
    keep = ["ticker", "date", "horizon", "base_date", "base_price", "forecast", "actual"]
    keep += [COLUMN[n] for n in ("naive", "seasonal_naive", "drift", "champion") if COLUMN[n] in preds]
    preds[keep].to_parquet(folder / "test_predictions.parquet", index=False)
    # ticker symbols are data, never path fragments: only letters, digits and dashes reach a file name
    plots = [
        ticker_plot(g, str(t), folder / f"forecast_{i:03d}_{re.sub(r'[^A-Za-z0-9-]', '_', str(t))[:40]}.png")
        for i, (t, g) in enumerate(preds.groupby("ticker"))
    ]
    plots.append(error_histogram(preds, folder / "error_histogram.png"))
    return plots


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers and workers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ticker_plot(preds: pd.DataFrame, ticker: str, path: Path) -> Path:
    """Actual vs one-step forecast (and naive) over the test period, for one ticker."""
    plt = _pyplot()
    d = preds[preds["horizon"] == 1].sort_values("date")
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(d["date"], d["actual"], label="actual", color="black", linewidth=1.0)
    ax.plot(d["date"], d["naive"], label="naive (tomorrow = today)", color="tab:gray", linewidth=0.8, linestyle="--")
    ax.plot(d["date"], d["forecast"], label="model", color="tab:blue", linewidth=0.8)
    ax.set_title(f"{ticker}: one-step forecasts on the test split")
    ax.set_ylabel("price")
    return _save_figure(plt, fig, ax, path)


def error_histogram(preds: pd.DataFrame, path: Path) -> Path:
    """Distribution of forecast errors in percent of the actual price, model vs naive."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for col, label in (("naive", "naive"), ("forecast", "model")):
        ax.hist(100 * (preds[col] - preds["actual"]) / preds["actual"], bins=60, alpha=0.5, label=label)
    ax.set_xlabel("forecast error, % of actual")
    ax.set_ylabel("forecasts")
    return _save_figure(plt, fig, ax, path)


def _save_figure(plt, fig, ax, path: Path) -> Path:
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def markdown_report(result: Evaluation, run_id: str) -> str:
    champion = f" The current champion (v{result.champion_version}) was scored on the same windows." if "champion" in result.metrics else ""
    return (
        f"# Test metrics (price units)\n\nSkill vs naive: **{result.skill:+.4f}** "
        f"(1 - RMSE_model / RMSE_naive) over {result.n_windows} forecasts.{champion}\n\n{result.table()}\n\n"
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
    forecaster: Forecaster, dataset: WindowDataset, prices: pd.DataFrame, model_name: str, run_id: str
) -> Evaluation:
    logger = get_run_logger()
    champion_uri, champion_version = champion_uri_for(model_name)
    result = evaluate_forecaster(forecaster, dataset, prices, champion_uri)
    result.champion_version = champion_version
    client = use_tracking()
    metrics = mlflow_metrics(result)
    for start in range(0, len(metrics), 900):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=metrics[start : start + 900])
    with tempfile.TemporaryDirectory() as tmp:
        write_reports(result, Path(tmp))
        client.log_artifacts(run_id, tmp, "evaluation")
    m = result.metrics
    logger.info(
        "test split, %d forecasts: model RMSE %.4f vs naive %.4f (skill %+.4f)%s",
        result.n_windows, m["model"]["rmse"], m["naive"]["rmse"], result.skill,
        f"; champion v{champion_version} RMSE {m['champion']['rmse']:.4f}" if "champion" in m else "",
    )
    create_markdown_artifact(
        key="test-metrics",
        markdown=markdown_report(result, run_id),
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
    return replace(base, train_fraction=(n_train + 0.5) / n_days, val_fraction=(n_val + 0.5) / n_days)


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
    from tasks.train import fit_forecaster  # training is only needed when a backtest runs

    days = np.unique(prices["date"].to_numpy("datetime64[ns]"))
    folds = []
    for k, (cut_idx, end_idx) in enumerate(fold_periods(days, config)):
        # nothing after the fold's last test day exists for this fold; nothing after `cutoff` is trained on
        seen = prices[prices["date"] <= days[end_idx]]
        fold_config = fold_window_config(window_config, end_idx + 1, cut_idx + 1)
        fold_hash = stable_hash({"source": source_hash, "until": str(days[end_idx])})
        dataset = build_window_dataset(seen, fold_config, fold_hash, root)
        forecaster = fit_forecaster(dataset, train_config, None, log)
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
