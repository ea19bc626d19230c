"""The story a training run's MLflow page tells: the note, the `headline/` metrics, the overview chart."""

from __future__ import annotations

import mlflow
import pytest
from price_frames import make_prices
from tiny_models import EVAL_WINDOWS, untrained_forecaster

from tickerflow.reporting.evaluation import BARS_SHOWN, overview_figure, ticker_gains
from tickerflow.reporting.run_note import (
    HEADLINE,
    LINE_CHARS,
    headline_metrics,
    run_note,
    verdict,
    visible_length,
    without_asides,
)
from tickerflow.tasks.register import Registration
from tickerflow.tracking.runs import TrackedRun
from tickerflow_model.evaluation import evaluate_forecaster
from tickerflow_model.window_dataset import build_window_dataset

REASON = (
    "garch has the best pinball of the forecasters that meet the gate (-0.59%, t -1.40 vs the GRU) "
    "(garch 0.2435, the GRU 0.2450 (calibrated); coverage within +/-5.0%; no point forecast significantly worse "
    "than naive at 0.05); champion v1 was not compared: could not be loaded or run (OSError): gone"
)
KEPT = Registration("tickerflow-gru", "3", False, REASON, "models:/tickerflow-gru/3", "2", "garch")
PROMOTED = Registration("tickerflow-gru", "4", True, "the GRU wins", "models:/tickerflow-gru/4", "4", "gru")


def evaluation_of(tickers, tmp_path, n_days=400):
    prices = make_prices(n_days=n_days, tickers=tickers, seed=7)
    dataset = build_window_dataset(prices, EVAL_WINDOWS, "src", tmp_path / "windows")
    return evaluate_forecaster(untrained_forecaster(dataset, 1.0), dataset, prices)


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """Three tickers with enough history that garch is fit (not EWMA's stand-in): garch and ewma differ."""
    result = evaluation_of(("AAA", "BBB", "CCC"), tmp_path_factory.mktemp("eval"))
    assert not result.garch_fallbacks
    return result


def test_the_note_names_each_rival_with_the_gain_and_t_the_coverage_and_the_decision(evaluation):
    lines = run_note(evaluation, KEPT).splitlines()

    # MLflow's run page shows four lines of a description before "Show more": each on one line at 1600 px
    assert len(lines) == 4 and all(visible_length(line) <= LINE_CHARS for line in lines)
    assert lines[0] == "**Not promoted**: the champion is tickerflow-gru v2 (garch)."  # the reason is too long here
    model = evaluation.metrics["model"]
    for line, rival in zip(lines[1:3], ("garch", "ewma")):
        row = evaluation.comparison("model", rival)
        wins = sum(by["model"]["pinball"] < by[rival]["pinball"] for by in evaluation.per_ticker.values())
        assert line == (
            f"**The GRU vs {rival}**: pinball {model['pinball']:.4f} vs {evaluation.metrics[rival]['pinball']:.4f}, "
            f"**{row['gain']:+.2%}** (HAC t {row['t']:.2f}), lower on {wins} of 3 tickers."
        )
    assert evaluation.comparison("model", "garch")["gain"] != evaluation.comparison("model", "ewma")["gain"]
    assert lines[3].startswith("**Coverage**, nominal → actual: ")
    for c in (80, 90, 98):
        assert f"{c}% → {model[f'coverage_{c}']:.1%}" in lines[3]
    assert f"**Skill vs naive** (RMSE): {evaluation.skill:+.4f} over {evaluation.n_windows} forecasts." in lines[3]


def test_the_verdict_gives_the_gates_reason_without_its_asides_when_it_fits():
    assert verdict(PROMOTED) == "**Promoted**: the champion is tickerflow-gru v4 (gru). The gate: the GRU wins."
    short = Registration(
        "m", "3", False, "garch has the best pinball (garch 0.24, the GRU 0.25)", "models:/m/3", "2", "garch"
    )
    assert verdict(short) == "**Not promoted**: the champion is m v2 (garch). The gate: garch has the best pinball."
    assert verdict(KEPT) == "**Not promoted**: the champion is tickerflow-gru v2 (garch)."
    assert visible_length(f"{verdict(KEPT)[:-1]}. The gate: {without_asides(REASON)}.") > LINE_CHARS


def test_a_reason_loses_its_asides_and_nothing_else():
    assert without_asides("a (b (c) d) e; f (g)") == "a e; f"
    assert without_asides("champion v2 stays: x's pinball 0.25 (+0.1%, t 0.3) is not significantly lower") == (
        "champion v2 stays: x's pinball 0.25 is not significantly lower"
    )
    assert without_asides("no parentheses.") == "no parentheses"


def test_finishing_the_run_writes_the_note_and_logs_the_headline_figures_under_one_prefix(evaluation, mlflow_store):
    from tickerflow.reporting.training import finish_training_run
    from tickerflow.tracking.store import experiment_id

    client = mlflow.MlflowClient(mlflow_store, mlflow_store)
    run_id = client.create_run(experiment_id(client)).info.run_id
    run = TrackedRun(run_id)
    run.log_metrics({"test_model_pinball": evaluation.metrics["model"]["pinball"]})  # an existing key stays
    finish_training_run.fn(run, evaluation, KEPT)

    logged = client.get_run(run_id)
    assert logged.data.tags["mlflow.note.content"] == run_note(evaluation, KEPT)
    assert logged.info.status == "FINISHED"
    metrics = logged.data.metrics
    garch = evaluation.comparison("model", "garch")
    assert metrics["headline/pinball"] == pytest.approx(evaluation.metrics["model"]["pinball"])
    assert metrics["headline/pinball_gain_vs_garch_pct"] == pytest.approx(100 * garch["gain"])
    assert metrics["headline/pinball_gain_vs_garch_t"] == pytest.approx(garch["t"])
    assert metrics["headline/coverage_80"] == pytest.approx(evaluation.metrics["model"]["coverage_80"])
    assert metrics["headline/coverage_90"] == pytest.approx(evaluation.metrics["model"]["coverage_90"])
    assert metrics["headline/skill_vs_naive"] == pytest.approx(evaluation.skill)
    assert metrics["headline/promoted"] == 0.0
    assert metrics["test_model_pinball"] == pytest.approx(evaluation.metrics["model"]["pinball"])
    # the MLflow UI makes a chart section of each prefix, prefixed sections first: `headline` is the only one
    assert {k.rsplit("/", 1)[0] for k in metrics if "/" in k} == {"headline"}
    assert set(headline_metrics(evaluation, KEPT)) == {k for k in metrics if k.startswith(HEADLINE)}
    assert len(headline_metrics(evaluation, KEPT)) == 7  # six of them on the tab's first screen


def test_the_overview_names_the_tickers_on_its_axis_best_first_against_garch(evaluation):
    fig = overview_figure(evaluation)
    overall, by_ticker = fig.axes[:2]

    gains = ticker_gains(evaluation, "garch")
    aaa = evaluation.per_ticker["AAA"]
    assert gains["AAA"] == pytest.approx(1 - aaa["model"]["pinball"] / aaa["garch"]["pinball"])
    assert [t.get_text() for t in by_ticker.get_xticklabels()] == list(gains.index)
    assert list(gains) == sorted(gains, reverse=True)
    assert [p.get_height() for p in by_ticker.patches] == pytest.approx(list(100 * gains))
    assert [t.get_text() for t in overall.get_xticklabels()] == ["vs garch", "vs ewma"]
    garch = evaluation.comparison("model", "garch")
    assert fig.get_suptitle() == f"The GRU vs garch: pinball gain {garch['gain']:+.2%} (HAC t {garch['t']:.2f})"


def test_with_many_tickers_the_overview_names_the_best_and_the_worst(tmp_path):
    result = evaluation_of(tuple(f"T{i:02d}" for i in range(50)), tmp_path, n_days=150)
    labels = [t.get_text() for t in overview_figure(result).axes[1].get_xticklabels()]

    ranked = list(ticker_gains(result, "garch").index)
    assert len(ranked) == 50 and len(labels) == BARS_SHOWN
    assert labels == ranked[: BARS_SHOWN // 2] + ranked[-BARS_SHOWN // 2 :]
