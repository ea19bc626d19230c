"""Evaluation, backtest and registration records of a training run.

Every figure the evaluation, the backtest and the gate produce lands here: bounded MLflow metric keys,
report files and charts under `evaluation/`, the per-ticker table, run and version tags, and the
keyed Prefect artifacts `test-metrics`, `backtest` and `promotion-decision`.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact

from tickerflow.reporting.charts import figure
from tickerflow.tasks.register import Registration
from tickerflow.tracking.models import tag_version
from tickerflow.tracking.runs import TrackedRun
from tickerflow_model.backtest import Backtest
from tickerflow_model.config import EvaluateConfig, RegisterConfig
from tickerflow_model.evaluation import Evaluation
from tickerflow_model.gate import GateDecision
from tickerflow_model.gate import label as gate_label
from tickerflow_model.metrics import HORIZON_METRICS, METRIC_KEYS
from tickerflow_model.quantiles import quantile_columns

UNSCORED_TAG = "champion_scoring_error"  # set on a champion version that could not be loaded or scored
EVALUATION_SUMMARY_UNITS = "point metrics in price units; distribution scores on cumulative log returns in percent"


def safe_metric_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)


def mlflow_metrics(result: Evaluation) -> dict[str, float]:
    """A bounded set of keys, whatever the number of tickers.

    `test_<forecaster>_<metric>` overall, and `test_h<k>_model_<metric>` per horizon step (when there
    is more than one) for HORIZON_METRICS; per-ticker figures go to a table artifact instead.
    """
    out = {"test_skill_vs_naive": result.skill}
    scopes = [("", result.metrics)]
    if len(result.per_horizon) > 1:
        scopes += [
            (f"{k}_", {"model": {m: v for m, v in by["model"].items() if m in HORIZON_METRICS}})
            for k, by in result.per_horizon.items()
        ]
    for prefix, by_name in scopes:
        for name, m in by_name.items():
            out.update({safe_metric_key(f"test_{prefix}{name}_{k}"): float(v) for k, v in m.items()})
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


def fan_chart(preds: pd.DataFrame, ticker: str, levels, path: Path) -> Path:
    """Actual one-day-ahead prices with the model's median and its 50/80/90% bands, over the test period."""
    d = preds[preds["horizon"] == 1].sort_values("date")
    cols = dict(zip(levels, quantile_columns(levels)))
    fig, ax = figure(10, 4)
    for coverage, alpha in ((0.90, 0.15), (0.80, 0.25), (0.50, 0.35)):
        lo, hi = cols.get(round((1 - coverage) / 2, 4)), cols.get(round((1 + coverage) / 2, 4))
        if lo in d and hi in d:
            ax.fill_between(
                d["date"], d[lo], d[hi], color="tab:blue", alpha=alpha, linewidth=0, label=f"{coverage:.0%} band"
            )
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
        "pinball" in by.get("static_quantile", {}) and "pinball" in by.get("model", {})
        for by in result.per_ticker.values()
    )
    label = "pinball skill vs static_quantile" if uses_pinball else "RMSE skill vs naive"
    fig, (left, right) = figure(12, 4, ncols=2)
    left.hist(ranking.to_numpy(), bins=min(40, max(5, len(ranking))), color="tab:blue")
    left.axvline(0.0, color="black", linewidth=0.8)
    left.set_xlabel(label)
    left.set_ylabel("tickers")
    left.set_title(f"model skill across {len(ranking)} tickers")
    right.plot(
        np.arange(len(ranking)), ranking.to_numpy(), marker="." if len(ranking) <= 200 else None, color="tab:blue"
    )
    right.axhline(0.0, color="black", linewidth=0.8)
    right.set_xlabel("tickers, best to worst" + ("" if len(ranking) > 30 else ": " + " ".join(ranking.index)))
    right.set_ylabel(label)
    right.set_title("skill by ticker")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.14, wspace=0.25)
    fig.savefig(path, dpi=80)
    return path


def evaluation_markdown(result: Evaluation, run: TrackedRun, config: EvaluateConfig = EvaluateConfig()) -> str:
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
        f"MLflow run: [{run.run_id}]({run.url})\n"
    )


@task(name="log-evaluation")
def log_evaluation(result: Evaluation, model_name: str, config: EvaluateConfig, run: TrackedRun) -> None:
    """Metrics, report files and charts, the per-ticker table, and the `test-metrics` artifact; a champion that
    was not compared is flagged on the run and on its version."""
    if result.champion_error and result.champion_version:
        run.set_tags({"champion_not_compared": f"v{result.champion_version}: {result.champion_error}"})
        tag_version(model_name, result.champion_version, {UNSCORED_TAG: result.champion_error})
    run.log_metrics(mlflow_metrics(result))
    with tempfile.TemporaryDirectory() as tmp:
        write_reports(result, Path(tmp), config)
        run.log_folder(tmp, "evaluation")
    # the MLflow UI shows a logged table in the run's evaluation view
    run.log_table(result.ticker_table().astype({k: float for k in METRIC_KEYS}), "evaluation/per_ticker_table.json")
    create_markdown_artifact(
        key="test-metrics",
        markdown=evaluation_markdown(result, run, config),
        description="Model vs baselines (and champion) on the test split",
    )


def markdown_rows(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join(
        ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        + ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    )


@task(name="log-backtest")
def log_backtest(result: Backtest | None, run: TrackedRun) -> None:
    """Walk-forward folds in the MLflow run (`backtest_fold_skill`, `backtest_*`) and the `backtest` artifact."""
    if result is None:
        return
    metrics = {"backtest_skill_vs_naive": result.metrics["model"]["skill"]}
    metrics.update({f"backtest_{n}_{k}": float(v) for n, m in result.metrics.items() for k, v in m.items()})
    run.log_metrics(metrics)
    run.log_steps(("backtest_fold_skill", f.evaluation.skill, f.index) for f in result.folds)
    run.log_text(pd.DataFrame(result.fold_rows()).to_csv(index=False), "evaluation/backtest_folds.csv")
    create_markdown_artifact(
        key="backtest",
        markdown=f"# Walk-forward backtest\n\nPooled skill vs naive: **{result.metrics['model']['skill']:+.4f}**\n\n"
        f"{markdown_rows(result.fold_rows())}\n\nMLflow run: [{run.run_id}]({run.url})\n",
        description="Walk-forward folds: expanding history, windows and scaler rebuilt per fold",
    )


def gate_markdown(
    decision: GateDecision, evaluation: Evaluation, config: RegisterConfig, headline: str, run: TrackedRun
) -> str:
    """The Prefect artifact: the verdict, the reason, and each candidate against each condition."""
    lines = [
        f"# Promotion gate: {headline}",
        "",
        decision.reason,
        "",
        f"| candidate | {config.primary_score} | coverage 80% | coverage 90% | skill vs naive | meets the gate |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(decision.scores, key=decision.scores.__getitem__):
        m = evaluation.metrics[name]
        verdict = "yes" if not decision.missed[name] else "no: " + "; ".join(decision.missed[name])
        cov = lambda k, m=m: f"{m[k]:.1%}" if k in m else "-"  # noqa: E731
        lines.append(
            f"| {gate_label(name, evaluation)} | {decision.scores[name]:.4f} | {cov('coverage_80')} | {cov('coverage_90')} "
            f"| {m.get('skill', float('nan')):+.4f} | {verdict} |"
        )
    lines += [
        "",
        f"Coverage tolerance +/-{config.coverage_tolerance:.1%}, minimum skill {config.min_skill:+.4f}, "
        f"required gain over the champion {config.min_improvement:.2%}.",
        "",
        f"MLflow run: [{run.run_id}]({run.url})",
    ]
    return "\n".join(lines) + "\n"


@task(name="log-registration")
def log_registration(
    registration: Registration, evaluation: Evaluation, config: RegisterConfig, run: TrackedRun
) -> None:
    """The gate's outcome on the run (tags `promotion*`, `champion_*`, metric `promoted`) and the
    `promotion-decision` artifact."""
    run.set_tags(
        {
            "promotion": "promoted" if registration.promoted else "rejected",
            "promotion_reason": registration.reason,
            "champion_version": registration.champion_version,
            "champion_forecaster": registration.champion_forecaster,
        }
    )
    run.log_metrics({"promoted": float(registration.promoted)})
    if registration.decision is None:  # a registration made without the gate: no verdicts to show
        return
    create_markdown_artifact(
        key="promotion-decision",
        markdown=gate_markdown(registration.decision, evaluation, config, registration.headline, run),
        description="Which forecaster is the champion after this run, and why",
    )
