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

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact

from tickerflow.reporting.charts import figure
from tickerflow.tasks.register import Registration
from tickerflow.tracking.models import tag_version
from tickerflow.tracking.runs import TrackedRun
from tickerflow_model.backtest import Backtest
from tickerflow_model.config import EvaluateConfig, RegisterConfig
from tickerflow_model.evaluation import CHAMPION, RIVALS, Evaluation
from tickerflow_model.gate import GateDecision
from tickerflow_model.gate import label as gate_label
from tickerflow_model.metrics import HORIZON_METRICS, METRIC_KEYS
from tickerflow_model.quantiles import quantile_column, quantile_columns

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
    return {**out, **risk_metrics(result)}


BASEL_LEVELS = (0.01, 0.99)  # the tail levels whose step-1 backtests get a metric key of their own


def risk_metrics(result: Evaluation) -> dict[str, float]:
    """Bounded keys of the risk desk's figures: each forecaster's Kupiec and conditional-coverage p-values at
    the 1% and 99% levels (step 1), `risk_<forecaster>_kupiec_p_q01`; its pinball against garch and the
    champion, `versus_<forecaster>_<reference>_gain` and `_t`; and per step the GRU's against garch,
    `versus_h<k>_model_garch_gain` / `_t`. The full tables are `tail_backtests.csv` and `comparisons.csv`."""
    out: dict[str, float] = {}
    tails = result.tails[result.tails["horizon"] == 1]
    for row in tails.itertuples():
        if any(abs(row.level - q) < 1e-9 for q in BASEL_LEVELS):
            column = quantile_column(row.level)
            out[f"risk_{row.forecaster}_kupiec_p_{column}"] = float(row.kupiec_p)
            out[f"risk_{row.forecaster}_cc_p_{column}"] = float(row.cc_p)
    for row in result.comparisons.itertuples():
        if str(row.horizon) == "all":
            out[f"versus_{row.forecaster}_{row.reference}_gain"] = float(row.gain)
            out[f"versus_{row.forecaster}_{row.reference}_t"] = float(row.t)
        elif row.forecaster == "model" and row.reference == "garch" and result.horizon > 1:
            out[f"versus_h{row.horizon}_model_garch_gain"] = float(row.gain)
            out[f"versus_h{row.horizon}_model_garch_t"] = float(row.t)
    return {safe_metric_key(k): v for k, v in out.items()}


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
    result.tails.to_csv(folder / "tail_backtests.csv", index=False)
    result.comparisons.to_csv(folder / "comparisons.csv", index=False)
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
    """Actual one-day-ahead prices with the model's median and its 50/80/90/98% bands, over the test period."""
    d = preds[preds["horizon"] == 1].sort_values("date")
    cols = dict(zip(levels, quantile_columns(levels)))
    fig, ax = figure(10, 4)
    for coverage, alpha in ((0.98, 0.08), (0.90, 0.15), (0.80, 0.25), (0.50, 0.35)):
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


OVERVIEW_RIVAL = "garch"  # the rival the overview, the note and the console lead with
BARS_SHOWN = 40  # tickers drawn by name on the overview: with more, the best and the worst half of this each


def ticker_gains(result: Evaluation, rival: str = OVERVIEW_RIVAL) -> pd.Series:
    """ticker -> the GRU's pinball gain against `rival` on that ticker (1 - its pinball / the rival's), best
    first; only the tickers where both were scored."""
    gains = {
        t: 1.0 - by["model"]["pinball"] / by[rival]["pinball"]
        for t, by in result.per_ticker.items()
        if "pinball" in by.get("model", {}) and by.get(rival, {}).get("pinball", 0) > 0
    }
    return pd.Series(gains, dtype=float).sort_values(ascending=False)


def shown_tickers(ranked: pd.Series, limit: int = BARS_SHOWN) -> pd.Series:
    """All of `ranked`, or its best and worst `limit // 2` when there are more."""
    return ranked if len(ranked) <= limit else pd.concat([ranked.iloc[: limit // 2], ranked.iloc[-(limit // 2) :]])


def overview_figure(result: Evaluation):
    """What the console leads with, drawn: the GRU's pinball gain against garch and ewma over the whole test
    split (with the HAC t), and against garch ticker by ticker, the tickers named on the axis, best first.
    Without pinball figures (no quantiles), each ticker's point skill vs naive instead."""
    per_ticker = ticker_gains(result)
    label = f"the GRU's pinball gain vs {OVERVIEW_RIVAL}, %"
    if per_ticker.empty:
        skill = {t: by["model"]["skill"] for t, by in result.per_ticker.items() if "skill" in by.get("model", {})}
        per_ticker = pd.Series(skill, dtype=float).dropna().sort_values(ascending=False)
        label = "the GRU's RMSE skill vs naive, %"
    overall = {r: row for r in RIVALS if (row := result.comparison("model", r)) is not None}
    fig, (left, right) = figure(13, 4.2, ncols=2, width_ratios=[1, 3])
    names = [f"vs {r}" for r in overall]
    gains = [100 * float(row["gain"]) for row in overall.values()]
    left.bar(names, gains, color=["tab:green" if g > 0 else "tab:red" for g in gains])
    for x, (g, row) in enumerate(zip(gains, overall.values())):
        left.annotate(f"{g:+.2f}%\nt {float(row['t']):.2f}", (x, g), ha="center", va="bottom" if g >= 0 else "top")
    left.axhline(0.0, color="black", linewidth=0.8)
    left.margins(y=0.35)
    left.set_ylabel("pinball gain, % (> 0: the GRU is better)")
    left.set_title("overall (HAC t)")
    shown = 100 * shown_tickers(per_ticker)
    right.bar(list(shown.index), shown.to_numpy(), color=["tab:green" if g > 0 else "tab:red" for g in shown])
    right.axhline(0.0, color="black", linewidth=0.8)
    if OVERVIEW_RIVAL in overall and label.startswith("the GRU's pinball"):
        mean = 100 * float(overall[OVERVIEW_RIVAL]["gain"])
        right.axhline(mean, color="tab:blue", linestyle="--", linewidth=1, label=f"overall {mean:+.2f}%")
        right.legend(loc="upper right")
    if len(shown) < len(per_ticker):  # the best half, a gap, the worst half
        right.axvline(len(shown) / 2 - 0.5, color="grey", linestyle=":", linewidth=1)
    right.tick_params(axis="x", labelrotation=0 if len(shown) <= 12 else 90)
    right.set_ylabel(label)
    won = int((per_ticker > 0).sum())
    of = f"all {len(per_ticker)}" if len(shown) == len(per_ticker) else f"the best and worst of {len(per_ticker)}"
    right.set_title(f"by ticker, best first ({of}); better on {won} of {len(per_ticker)}")
    fig.suptitle(overview_headline(result))
    fig.subplots_adjust(left=0.06, right=0.99, top=0.83, bottom=0.12 if len(shown) <= 12 else 0.22, wspace=0.18)
    return fig


def overview_headline(result: Evaluation) -> str:
    row = result.comparison("model", OVERVIEW_RIVAL)
    if row is None:
        return f"The GRU on {len(result.per_ticker)} tickers: RMSE skill vs naive {result.skill:+.4f}"
    return f"The GRU vs {OVERVIEW_RIVAL}: pinball gain {float(row['gain']):+.2%} (HAC t {float(row['t']):.2f})"


def overview_plot(result: Evaluation, path: Path) -> Path:
    overview_figure(result).savefig(path, dpi=80)
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
        f"{tails_markdown(result)}"
        f"MLflow run: [{run.run_id}]({run.url})\n"
    )


def tails_markdown(result: Evaluation, levels=(0.01, 0.025, 0.975, 0.99)) -> str:
    """The tails as a risk desk checks them: each forecaster's exceedance rate at the 1% and 2.5% levels on
    each side (step 1, every day), with Kupiec's and Christoffersen's p-values; per step, the GRU against
    garch (gain and DM t)."""
    tails = result.tails[
        (result.tails["horizon"] == 1) & result.tails["level"].map(lambda q: any(abs(q - x) < 1e-9 for x in levels))
    ]
    if tails.empty:
        return ""
    shown = [quantile_column(q) for q in levels if any(abs(tails["level"] - q) < 1e-9)]
    lines = [
        "## The tails, step 1: exceedance rate (Kupiec p / conditional coverage p)",
        "",
        "| forecaster | " + " | ".join(f"{c} (expected {min(q, 1 - q):.1%})" for c, q in zip(shown, levels)) + " |",
        "|---|" + "---|" * len(shown),
    ]
    for name, rows in tails.groupby("forecaster", sort=False):
        cells = [f"{r.rate:.2%} ({r.kupiec_p:.2f} / {r.cc_p:.2f})" for r in rows.sort_values("level").itertuples()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    steps = result.comparisons[
        (result.comparisons["forecaster"] == "model") & (result.comparisons["reference"] == "garch")
    ]
    if result.horizon > 1 and not steps.empty:
        lines += ["", "| step | the GRU vs garch: pinball gain (DM t) |", "|---|---|"]
        lines += [f"| {r.horizon} | {r.gain:+.2%} ({r.t:.2f}) |" for r in steps.itertuples()]
    return "\n".join(lines) + "\n\nEvery forecaster, level and step: `evaluation/tail_backtests.csv`.\n\n"


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
    """The Prefect artifact: the verdict, the reason, and each candidate against each condition and test."""
    champion = CHAMPION in decision.scores
    lines = [
        f"# Promotion gate: {headline}",
        "",
        decision.reason,
        "",
        f"| candidate | {config.primary_score} | coverage 80% | coverage 90% | coverage 98% | skill vs naive (DM t) "
        + ("| vs the champion (DM t) " if champion else "")
        + "| meets the gate |",
        "|---|---|---|---|---|---|" + ("---|" if champion else "") + "---|",
    ]
    for name in sorted(decision.scores, key=decision.scores.__getitem__):
        m, test = evaluation.metrics[name], evaluation.point_tests.get(name)
        verdict = "yes" if not decision.missed[name] else "no: " + "; ".join(decision.missed[name])
        cov = lambda k, m=m: f"{m[k]:.1%}" if k in m else "-"  # noqa: E731
        skill = f"{m.get('skill', float('nan')):+.4f}" + (f" ({test.t:.2f})" if test is not None else "")
        versus = decision.versus_champion.get(name)
        lines.append(
            f"| {gate_label(name, evaluation)} | {decision.scores[name]:.4f} | {cov('coverage_80')} | {cov('coverage_90')} "
            f"| {cov('coverage_98')} | {skill} "
            + (f"| {versus.text() if versus else '-'} " if champion else "")
            + f"| {verdict} |"
        )
    coverage = (
        f"coverage within +/-{config.coverage_tolerance:.1%} of nominal"
        if config.coverage_test == "tolerance"
        else f"Kupiec's test of each interval's misses at step 1 not rejected at {config.significance:g}"
    )
    floor = f"; skill at least {config.min_skill:+.4f}" if config.min_skill is not None else ""
    lines += [
        "",
        f"The gate: {coverage}; a point forecast not significantly worse than naive (Diebold-Mariano on squared "
        f"errors, Newey-West variance, one-sided {config.significance:g}){floor}; a challenger replaces the "
        f"champion only when its {config.primary_score} is significantly lower (the same test)"
        + (f" and by more than {config.min_improvement:.2%}" if config.min_improvement else "")
        + ". The risk desk's backtests (Kupiec, Christoffersen) of every forecaster, level and step: "
        "`evaluation/tail_backtests.csv` in the MLflow run.",
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
