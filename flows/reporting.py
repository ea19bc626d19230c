"""The one place that reports: stage results -> MLflow params, metrics, artifacts and Prefect artifacts.

Stages (`tickerflow.tasks`) compute and return values; they never see an MLflow run. The training flow
hands each result to a function here, together with the run id it started; the daily flow's functions
(at the end) open the runs of their own experiments.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import fsspec
import mlflow
import numpy as np
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from prefect import runtime, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tickerflow.tasks.forecast import FORECAST_EXPERIMENT, ForecastBatch
from tickerflow.tasks.monitor import MONITOR_EXPERIMENT, LiveScores, version_key
from tickerflow_model.redaction import redact_uri
from tickerflow.tasks.register import Registration
from tickerflow.tasks.tracking import PREFECT_FLOW_RUN_TAG, end_run, experiment_id, run_url, use_tracking
from tickerflow.tasks.validate import ValidationReport
from tickerflow_model.backtest import Backtest
from tickerflow_model.evaluation import EvaluateConfig, Evaluation
from tickerflow_model.fitting import FitResult
from tickerflow_model.gate import GateDecision, RegisterConfig
from tickerflow_model.gate import label as gate_label
from tickerflow_model.live import LIVE_METRICS, NOMINAL_COVERAGE
from tickerflow_model.metrics import HORIZON_METRICS, METRIC_KEYS
from tickerflow_model.quantiles import central_pairs
from tickerflow_model.quantiles import quantile_columns
from tickerflow_model.trainer import EpochStats
from tickerflow_model.window_dataset import WindowDataset


# --- data and training: validation, windows, training ------------------------------------------------
@task(name="log-validation")
def log_validation(report: ValidationReport, run_id: str | None = None) -> None:
    """The `validation-summary` artifact, on every run (a cached validation included), passed or not.

    With a run id, Data Docs go to MLflow too, once per validation id: a later run of the same
    validation links to the run that holds them (tag `validation.data_docs_run`) instead of copying
    them again. The daily flow has no run of its own to give: it gets the artifact only.
    """
    create_markdown_artifact(key="validation-summary", markdown=report.markdown(), description="GX validation")
    if run_id is None:
        return
    client = use_tracking()
    validation = Path(report.docs_dir).parent.name  # validation/<validation id>/data_docs
    holder = client.search_runs(
        [experiment_id(client)], filter_string=f"tags.`validation.data_docs_of` = '{validation}'", max_results=1
    )
    if holder:
        docs_run = holder[0].info.run_id
    else:
        client.log_artifacts(run_id, report.docs_dir, "validation/data_docs")
        client.set_tag(run_id, "validation.data_docs_of", validation)
        docs_run = run_id
    client.set_tag(run_id, "validation.data_docs_run", docs_run)
    client.set_tag(run_id, "validation_id", validation)
    client.log_text(run_id, report.summary(), "validation/summary.txt")
    client.set_tag(run_id, "validation", "passed" if report.success else "failed")


@task(name="log-dataset-lineage")
def log_dataset_lineage(dataset: WindowDataset, run_id: str) -> None:
    """Record the window dataset (id = digest, folder = source) as the run's training input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "can be interpreted in multiple ways": both are local files
        source = resolve_dataset_source(Path(dataset.path).as_uri())
    entity = MetaDataset(source, name=f"windows-{dataset.dataset_id}", digest=dataset.dataset_id)._to_mlflow_entity()
    client = use_tracking()
    client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])])
    client.set_tag(run_id, "dataset_id", dataset.dataset_id)
    client.set_tag(run_id, "source_hash", dataset.manifest["source_hash"])


def epoch_metrics(s: EpochStats) -> dict[str, float]:
    return {
        "train_loss": s.train_loss,
        "val_loss": s.val_loss,
        "lr": s.lr,
        "epoch_seconds": s.epoch_seconds,
        "samples_per_second": s.samples_per_second,
    }


def epoch_reporter(run_id: str) -> Callable[[EpochStats], None]:
    """The train stage's `on_epoch`: each epoch's metrics into the MLflow run as it ends, step = epoch,
    so the MLflow UI draws the curves while training runs."""
    client = use_tracking()

    def report(s: EpochStats) -> None:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id, metrics=[mlflow.entities.Metric(k, float(v), now, s.epoch) for k, v in epoch_metrics(s).items()]
        )

    return report


def fit_metrics(result: FitResult) -> dict[str, float]:
    """What the fit found: best epoch and loss, the shrinkage and the conformal margins per horizon step."""
    out = {"best_val_loss": float(result.best_val_loss), "best_epoch": float(result.best_epoch)}
    pairs = central_pairs(result.forecaster.spec.quantiles)
    for k, a in enumerate(result.shrinkage, start=1):
        out[f"shrinkage_h{k}"] = float(a)
        for (_, _, cov), m in zip(pairs, result.margins[k - 1] if result.margins else ()):
            out[f"cqr_margin_{round(cov * 100)}_h{k}"] = float(m)
    return out


@task(name="log-training")
def log_training(result: FitResult, run_id: str) -> None:
    """The fit's figures (`fit_metrics`) and where it ran (tags train.device, train.precision)."""
    client = use_tracking()
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[mlflow.entities.Metric(k, v, now, 0) for k, v in fit_metrics(result).items()],
        tags=[mlflow.entities.RunTag("train.device", result.device), mlflow.entities.RunTag("train.precision", result.precision)],
    )




# --- evaluation, backtest and registration -------------------------------------------------------------
# Every figure the evaluation, the backtest and the gate produce lands here: bounded MLflow metric keys,
# report files and charts under `evaluation/`, the per-ticker table, run and version tags, and the
# keyed Prefect artifacts `test-metrics`, `backtest` and `promotion-decision`.
UNSCORED_TAG = "champion_scoring_error"  # set on a champion version that could not be loaded or scored
EVALUATION_SUMMARY_UNITS = "point metrics in price units; distribution scores on cumulative log returns in percent"


def safe_metric_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def mlflow_metrics(result: Evaluation) -> list[mlflow.entities.Metric]:
    """A bounded set of keys, whatever the number of tickers.

    `test_<forecaster>_<metric>` overall, and `test_h<k>_model_<metric>` per horizon step (when there
    is more than one) for HORIZON_METRICS; per-ticker figures go to a table artifact instead.
    """
    out = [mlflow.entities.Metric("test_skill_vs_naive", result.skill, 0, 0)]
    scopes = [("", result.metrics)]
    if len(result.per_horizon) > 1:
        scopes += [
            (f"{k}_", {"model": {m: v for m, v in by["model"].items() if m in HORIZON_METRICS}})
            for k, by in result.per_horizon.items()
        ]
    for prefix, by_name in scopes:
        for name, m in by_name.items():
            out += [
                mlflow.entities.Metric(safe_metric_key(f"test_{prefix}{name}_{k}"), float(v), 0, 0)
                for k, v in m.items()
                if np.isfinite(v)
            ]
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
        "units": EVALUATION_SUMMARY_UNITS,
    }
    (folder / "metrics.json").write_text(json.dumps(payload, indent=2))
    pd.DataFrame(result.rows()).to_csv(folder / "metrics.csv", index=False)
    per_ticker = result.ticker_table()
    per_ticker.to_csv(folder / "metrics_per_ticker.csv", index=False)
    per_ticker.to_parquet(folder / "metrics_per_ticker.parquet", index=False)
    (folder / "metrics.md").write_text(result.table(result.report_scopes(config)))
    preds = result.prediction_frame()
    preds.to_parquet(folder / "test_predictions.parquet", index=False)
    plots = [overview_plot(result, folder / "overview.png")]
    # ticker symbols are data, never path fragments: only letters, digits and dashes reach a file name
    for i, ticker in enumerate(result.chart_tickers(config)):
        name = f"fan_{i:03d}_{re.sub(r'[^A-Za-z0-9-]', '_', ticker)[:40]}.png"
        plots.append(fan_chart(preds[preds["ticker"] == ticker], ticker, result.levels, folder / name))
    return plots


def _figure(width: float, height: float, **subplots):
    """A matplotlib Figure and its axes, without pyplot: no global figure registry and no backend to choose
    (savefig renders with Agg), so no display is needed on servers and workers."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(**subplots)


def fan_chart(preds: pd.DataFrame, ticker: str, levels, path: Path) -> Path:
    """Actual one-day-ahead prices with the model's median and its 50/80/90% bands, over the test period."""
    d = preds[preds["horizon"] == 1].sort_values("date")
    cols = dict(zip(levels, quantile_columns(levels)))
    fig, ax = _figure(10, 4)
    for coverage, alpha in ((0.90, 0.15), (0.80, 0.25), (0.50, 0.35)):
        lo, hi = cols.get(round((1 - coverage) / 2, 4)), cols.get(round((1 + coverage) / 2, 4))
        if lo in d and hi in d:
            ax.fill_between(d["date"], d[lo], d[hi], color="tab:blue", alpha=alpha, linewidth=0, label=f"{coverage:.0%} band")
    if cols.get(0.5) in d:
        ax.plot(d["date"], d[cols[0.5]], color="tab:blue", linewidth=0.8, label="median")
    ax.plot(d["date"], d["actual"], color="black", linewidth=0.9, label="actual")
    ax.set_title(f"{ticker}: one-day-ahead forecast distribution on the test split")
    ax.set_ylabel("price")
    ax.legend(loc="upper left")
    fig.subplots_adjust(left=0.08, right=0.96, top=0.92, bottom=0.1)  # fixed margins: no layout pass
    fig.savefig(path, dpi=80)
    return path


def overview_plot(result: Evaluation, path: Path) -> Path:
    """Across tickers: the distribution of the model's skill, and the skill of each ticker, sorted."""
    ranking = result.ticker_ranking().dropna()
    uses_pinball = any(
        "pinball" in by.get("static_quantile", {}) and "pinball" in by.get("model", {}) for by in result.per_ticker.values()
    )
    label = "pinball skill vs static_quantile" if uses_pinball else "RMSE skill vs naive"
    fig, (left, right) = _figure(12, 4, ncols=2)
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
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.14, wspace=0.25)
    fig.savefig(path, dpi=80)
    return path


def evaluation_markdown(result: Evaluation, run_id: str, config: EvaluateConfig = EvaluateConfig()) -> str:
    if "champion" in result.metrics:
        champion = f" The current champion (v{result.champion_version}) was scored on the same windows."
    elif result.champion_error:
        champion = f" The current champion (v{result.champion_version}) was not compared: {result.champion_error}."
    else:
        champion = ""
    return (
        f"# Test metrics\n\nSkill vs naive: **{result.skill:+.4f}** "
        f"(1 - RMSE_model / RMSE_naive) over {result.n_windows} forecasts.{champion}\n\n"
        + "".join(f"- {line}\n" for line in result.versus_rivals())
        + "\n"
        "Point metrics in price units; distribution scores (pinball, coverage, width, Winkler) on cumulative "
        "log returns in percent. Overall, then the best and worst tickers by the model's skill "
        f"(all {len(result.per_ticker)} tickers: `evaluation/metrics_per_ticker.csv` in the MLflow run).\n\n"
        f"{result.table(result.report_scopes(config))}\n\n"
        f"MLflow run: [{run_id}]({run_url(run_id)})\n"
    )


@task(name="log-evaluation")
def log_evaluation(result: Evaluation, model_name: str, config: EvaluateConfig, run_id: str) -> None:
    """Metrics, report files and charts, the per-ticker table, and the `test-metrics` artifact; a champion that
    was not compared is flagged on the run and on its version."""
    client = use_tracking()
    if result.champion_error:
        client.set_tag(run_id, "champion_not_compared", f"v{result.champion_version}: {result.champion_error}"[:5000])
        client.set_model_version_tag(model_name, result.champion_version, UNSCORED_TAG, result.champion_error[:5000])
    client.log_batch(run_id, metrics=mlflow_metrics(result))  # bounded: well under log_batch's 1000
    with tempfile.TemporaryDirectory() as tmp:
        write_reports(result, Path(tmp), config)
        client.log_artifacts(run_id, tmp, "evaluation")
    # the MLflow UI shows a logged table in the run's evaluation view
    table = result.ticker_table().astype({k: float for k in METRIC_KEYS})
    client.log_table(run_id, table, "evaluation/per_ticker_table.json")
    create_markdown_artifact(
        key="test-metrics",
        markdown=evaluation_markdown(result, run_id, config),
        description="Model vs baselines (and champion) on the test split",
    )


def markdown_rows(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(
        ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    )


@task(name="log-backtest")
def log_backtest(result: Backtest | None, run_id: str) -> None:
    """Walk-forward folds in the MLflow run (`backtest_fold_skill`, `backtest_*`) and the `backtest` artifact."""
    if result is None:
        return
    client = use_tracking()
    metrics = [mlflow.entities.Metric("backtest_skill_vs_naive", result.metrics["model"]["skill"], 0, 0)]
    metrics += [mlflow.entities.Metric(f"backtest_{n}_{k}", float(v), 0, 0) for n, m in result.metrics.items() for k, v in m.items()]
    metrics += [mlflow.entities.Metric("backtest_fold_skill", f.evaluation.skill, 0, f.index) for f in result.folds]
    client.log_batch(run_id, metrics=metrics)
    client.log_text(run_id, pd.DataFrame(result.fold_rows()).to_csv(index=False), "evaluation/backtest_folds.csv")
    create_markdown_artifact(
        key="backtest",
        markdown=f"# Walk-forward backtest\n\nPooled skill vs naive: **{result.metrics['model']['skill']:+.4f}**\n\n"
        f"{markdown_rows(result.fold_rows())}\n\nMLflow run: [{run_id}]({run_url(run_id)})\n",
        description="Walk-forward folds: expanding history, windows and scaler rebuilt per fold",
    )


def gate_markdown(decision: GateDecision, evaluation: Evaluation, config: RegisterConfig, headline: str, run_id: str) -> str:
    """The Prefect artifact: the verdict, the reason, and each candidate against each condition."""
    lines = [
        f"# Promotion gate: {headline}", "", decision.reason, "",
        f"| candidate | {config.primary_score} | coverage 80% | coverage 90% | skill vs naive | meets the gate |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(decision.scores, key=decision.scores.get):
        m = evaluation.metrics[name]
        verdict = "yes" if not decision.missed[name] else "no: " + "; ".join(decision.missed[name])
        cov = lambda k, m=m: f"{m[k]:.1%}" if k in m else "-"  # noqa: E731
        lines.append(
            f"| {gate_label(name, evaluation)} | {decision.scores[name]:.4f} | {cov('coverage_80')} | {cov('coverage_90')} "
            f"| {m.get('skill', float('nan')):+.4f} | {verdict} |"
        )
    lines += [
        "", f"Coverage tolerance +/-{config.coverage_tolerance:.1%}, minimum skill {config.min_skill:+.4f}, "
        f"required gain over the champion {config.min_improvement:.2%}.", "", f"MLflow run: [{run_id}]({run_url(run_id)})",
    ]
    return "\n".join(lines) + "\n"


@task(name="log-registration")
def log_registration(registration: Registration, evaluation: Evaluation, config: RegisterConfig, run_id: str) -> None:
    """The gate's outcome on the run (tags `promotion*`, `champion_*`, metric `promoted`) and the
    `promotion-decision` artifact."""
    client = use_tracking()
    client.set_tag(run_id, "promotion", "promoted" if registration.promoted else "rejected")
    client.set_tag(run_id, "promotion_reason", registration.reason[:5000])
    client.set_tag(run_id, "champion_version", registration.champion_version)
    client.set_tag(run_id, "champion_forecaster", registration.champion_forecaster)
    client.log_metric(run_id, "promoted", float(registration.promoted))
    create_markdown_artifact(
        key="promotion-decision",
        markdown=gate_markdown(registration.decision, evaluation, config, registration.headline, run_id),
        description="Which forecaster is the champion after this run, and why",
    )



# --- daily forecast and live monitoring ------------------------------------------------------------------
# The daily flow has no training run: each batch gets its own run in `tickerflow-forecasts` (with the
# Parquet it wrote, and the `batch-forecast` table artifact), and each model version one run in
# `tickerflow-monitoring`, a ledger its live metrics are added to day by day: `<metric>_<window>d`
# (`live_rmse_20d`, `live_skill_60d`, `live_coverage_80_20d`, ...), step = the scored day as the integer
# YYYYMMDD, each day once; the champion's plot goes there and its table into the `live-performance` artifact.
def monitoring_run(client: mlflow.MlflowClient, name: str, version: str) -> str:
    """The monitoring run of one model version (created on first use)."""
    exp = experiment_id(client, MONITOR_EXPERIMENT)
    found = client.search_runs(
        [exp], filter_string=f"tags.model_name = '{name}' and tags.model_version = '{version}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(exp, run_name=f"live {name} v{version}", tags={"model_name": name, "model_version": version})
    client.set_terminated(run.info.run_id, "FINISHED")  # a ledger, not a process: metrics are added day by day
    return run.info.run_id


def step_of(day: pd.Timestamp) -> int:
    """The MLflow step of a day: YYYYMMDD as an integer (sortable, readable on the axis)."""
    return int(pd.Timestamp(day).strftime("%Y%m%d"))


def log_version_metrics(client: mlflow.MlflowClient, run_id: str, metrics: pd.DataFrame) -> int:
    """Log the days not logged yet (tag `live.last_step`); returns how many metric values were logged."""
    last = int(client.get_run(run_id).data.tags.get("live.last_step", "0"))
    new = metrics[metrics["day"].map(step_of) > last]
    now = int(time.time() * 1000)
    values = [
        mlflow.entities.Metric(f"{name}_{int(row['window'])}d", float(row[name]), now, step_of(row["day"]))
        for _, row in new.iterrows() for name in LIVE_METRICS
        if name in row and row[name] is not None and not math.isnan(float(row[name]))
    ]
    for start in range(0, len(values), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=values[start : start + 1000])
    if len(new):
        client.set_tag(run_id, "live.last_step", str(step_of(new["day"].max())))
    return len(values)


def plot_live(metrics: pd.DataFrame, path: Path, title: str) -> Path:
    has_cov = "live_coverage_80" in metrics.columns and metrics["live_coverage_80"].notna().any()
    fig, axes = _figure(9, 5 if has_cov else 3, nrows=2 if has_cov else 1, sharex=True, squeeze=False)
    for window, g in metrics.groupby("window"):
        axes[0, 0].plot(g["day"], g["live_skill"], label=f"live skill, {window} days")
        if has_cov:
            for name in NOMINAL_COVERAGE:
                axes[1, 0].plot(g["day"], g[name], label=f"{name.removeprefix('live_')}, {window} days")
    axes[0, 0].axhline(0, color="grey", lw=0.8)
    axes[0, 0].set_ylabel("skill vs naive")
    axes[0, 0].legend(fontsize=8)
    axes[0, 0].set_title(title)
    if has_cov:
        for nominal in NOMINAL_COVERAGE.values():
            axes[1, 0].axhline(nominal, color="grey", lw=0.8, ls="--")
        axes[1, 0].set_ylabel("interval coverage")
        axes[1, 0].legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def live_markdown(metrics: pd.DataFrame, name: str, version: str, rows: int = 15) -> str:
    head = f"# Live performance: {name} v{version}\n\n"
    if metrics.empty:
        return head + "No stored forecast of this version has a realized close yet."
    cols = [c for c in LIVE_METRICS if c in metrics.columns and metrics[c].notna().any()]
    wide = metrics.pivot_table(index="day", columns="window", values=cols).sort_index().tail(rows)
    header = "| day | " + " | ".join(f"{c} ({w}d)" for c, w in wide.columns) + " |"
    lines = [header, "|" + "---|" * (len(wide.columns) + 1)]
    for day, row in wide.iterrows():
        lines.append(f"| {day:%Y-%m-%d} | " + " | ".join("" if pd.isna(v) else f"{v:.4f}" for v in row) + " |")
    return head + "\n".join(lines)


@task(name="log-live-metrics")
def log_live_metrics(scores: LiveScores, champion_name: str, champion_version: str) -> dict[str, str]:
    """Per model version: its monitoring run gets the new days; the champion's plot and a keyed artifact.

    Returns the monitoring run of each version with live metrics (`version_key` -> run id).
    """
    client = use_tracking()
    runs = {}
    for (name, version), g in scores.metrics.groupby(["model_name", "model_version"], sort=True):
        run_id = monitoring_run(client, name, version)
        log_version_metrics(client, run_id, g)
        runs[version_key(name, version)] = run_id
    mine = scores.metrics[
        (scores.metrics["model_name"] == champion_name) & (scores.metrics["model_version"] == champion_version)
    ] if len(scores.metrics) else scores.metrics
    link = ""
    if len(mine):
        run_id = runs[version_key(champion_name, champion_version)]
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_live(mine, Path(tmp) / "live_performance.png", f"{champion_name} v{champion_version}: live performance")
            client.log_artifact(run_id, str(png), "live")
        link = f"\n\nPlot of live skill and coverage over time: `live/live_performance.png` in MLflow run [{run_id}]({run_url(run_id)})."
    create_markdown_artifact(
        key="live-performance", markdown=live_markdown(mine, champion_name, champion_version) + link,
        description=f"Live metrics of {champion_name} v{champion_version} on the closes that followed its forecasts",
    )
    return runs


@task(name="publish-forecasts")
def publish_forecasts(batch: ForecastBatch, result: dict, source: str) -> dict:
    """One MLflow run per batch (in its own experiment) holding the Parquet; a Prefect table artifact.

    Returns `result` (what `write_forecasts` wrote) with the run's id as `mlflow_run_id`.
    """
    client = use_tracking()
    run = client.create_run(
        experiment_id(client, FORECAST_EXPERIMENT),
        tags={
            PREFECT_FLOW_RUN_TAG: str(runtime.flow_run.id or ""),
            "model_uri": result["model_uri"],
            "model_version": result["model_version"],
            "data.source": redact_uri(source),
            "skipped_tickers": ", ".join(f"{t} ({why})" for t, why in batch.skipped.items())[:5000] or "none",
        },
    )
    run_id = run.info.run_id
    client.log_metric(run_id, "forecast_rows", len(batch.frame))
    client.log_metric(run_id, "tickers_forecast", len(result["tickers"]))
    client.log_metric(run_id, "tickers_skipped", len(batch.skipped))
    if "://" in result["out"]:  # a remote output: the run keeps a copy of what was written
        with tempfile.TemporaryDirectory() as tmp, fsspec.open(result["out"], "rb") as src:
            local = Path(tmp) / Path(result["out"].split("?", 1)[0]).name
            local.write_bytes(src.read())
            client.log_artifact(run_id, str(local), "forecasts")
    else:
        client.log_artifact(run_id, result["out"], "forecasts")
    end_run(run_id, failed=False)
    table = batch.frame.assign(date=batch.frame["date"].dt.strftime("%Y-%m-%d"), forecast_close=batch.frame["forecast_close"].round(4))
    create_table_artifact(
        key="batch-forecast",
        table=table.to_dict(orient="records"),
        description=(
            f"Forecasts of {result['model_uri']} (version {result['model_version']}); MLflow run {run_url(run_id)}; "
            f"skipped: {', '.join(batch.skipped) or 'none'}"
        ),
    )
    return {**result, "mlflow_run_id": run_id}
