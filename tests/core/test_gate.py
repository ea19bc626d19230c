"""The promotion gate (core): the best forecaster by the declared score, its conditions, and its reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from gate_scores import evaluation, scores

from tickerflow_model.config import RegisterConfig
from tickerflow_model.evaluation import CHAMPION, Evaluation, outcomes, risk_tables
from tickerflow_model.gate import promotion_decision
from tickerflow_model.quantiles import pinball


def test_gate_picks_the_best_primary_score_among_the_forecasters_that_pass():
    decision = promotion_decision(
        evaluation(model=scores(0.50), static_quantile=scores(0.60), ewma=scores(0.55)), RegisterConfig()
    )
    assert decision.winner == "model" and decision.forecaster == "gru"
    assert "the GRU has the best pinball" in decision.reason
    # the GRU scores better but its 80% interval covers 70%: outside +/-5 points, so the best passing one wins
    decision = promotion_decision(
        evaluation(model=scores(0.50, cov80=0.70), static_quantile=scores(0.60), ewma=scores(0.55)), RegisterConfig()
    )
    assert decision.winner == "ewma" and decision.forecaster == "ewma"
    assert decision.missed["model"] == ["80% coverage 70.0% is outside 80% +/- 5.0%"]
    # ...unless the tolerance allows it
    assert (
        promotion_decision(
            evaluation(model=scores(0.50, cov80=0.70), ewma=scores(0.55)), RegisterConfig(coverage_tolerance=0.10)
        ).winner
        == "model"
    )


def test_a_point_forecast_is_vetoed_only_when_significantly_worse_than_naive():
    """A distribution forecaster with the best pinball and a slightly negative, non-significant skill wins."""
    ev = evaluation(model=scores(0.50, skill=-0.0114), ewma=scores(0.55), point_t={"model": -1.2})
    decision = promotion_decision(ev, RegisterConfig())
    assert decision.winner == "model" and decision.missed["model"] == []
    # significantly worse than naive (one-sided 5%: t < -1.645): vetoed, and the reason gives the test
    ev = evaluation(model=scores(0.50, skill=-0.0114), ewma=scores(0.55), point_t={"model": -2.3})
    decision = promotion_decision(ev, RegisterConfig())
    assert decision.winner == "ewma"
    assert decision.missed["model"] == [
        "its point forecast is significantly worse than naive (skill -0.0114, DM t -2.30 < -1.64)"
    ]
    # the level is the config's: at 1% the same t is noise
    assert promotion_decision(ev, RegisterConfig(significance=0.01)).winner == "model"


def test_a_hard_floor_on_skill_is_still_there_when_asked_for():
    ev = evaluation(model=scores(0.50, skill=-0.02), ewma=scores(0.55))
    assert promotion_decision(ev, RegisterConfig()).winner == "model"  # no floor by default
    decision = promotion_decision(ev, RegisterConfig(min_skill=0.0))
    assert (
        decision.winner == "ewma"
        and "skill vs naive -0.0200 is below the minimum +0.0000" in decision.missed["model"][0]
    )


def test_when_nothing_passes_the_best_score_still_wins_and_the_reason_names_what_it_missed():
    decision = promotion_decision(
        evaluation(model=scores(0.50, cov90=0.70), ewma=scores(0.55, cov80=0.60)), RegisterConfig()
    )
    assert decision.winner == "model"
    assert "no forecaster meets every condition" in decision.reason
    assert "90% coverage 70.0% is outside 90% +/- 5.0%" in decision.reason


def test_gate_compares_with_the_champion_on_the_same_windows_with_a_margin():
    config = RegisterConfig(min_improvement=0.01)
    assert promotion_decision(evaluation("3", model=scores(0.50), champion=scores(0.52)), config).winner == "model"
    decision = promotion_decision(evaluation("3", model=scores(0.515), champion=scores(0.52)), config)
    assert decision.winner == "champion" and "champion v3 stays" in decision.reason
    # a champion that does not pass the conditions is replaced by one that does
    decision = promotion_decision(evaluation("3", model=scores(0.60), champion=scores(0.40, cov80=0.5)), config)
    assert decision.winner == "model"
    # a champion that could not be scored is not a candidate; the reason says why
    decision = promotion_decision(
        evaluation("3", "could not be loaded or run: OSError: gone", model=scores(0.5)), config
    )
    assert decision.winner == "model" and "champion v3 was not compared: could not be loaded" in decision.reason


def test_a_challenger_replaces_the_champion_only_when_significantly_better():
    # lower, but not significantly (t 0.8 < 1.645): the champion stays, and the reason gives the test
    ev = evaluation("3", model=scores(0.50), champion=scores(0.502), champion_t={"model": 0.8})
    decision = promotion_decision(ev, RegisterConfig())
    assert decision.winner == "champion"
    assert "champion v3 stays" in decision.reason and "t 0.80) is not significantly lower" in decision.reason
    assert decision.versus_champion["model"].t == 0.8
    # significantly lower: replaced
    ev = evaluation("3", model=scores(0.50), champion=scores(0.502), champion_t={"model": 2.5})
    assert promotion_decision(ev, RegisterConfig()).winner == "model"


def test_float_noise_never_promotes():
    """The same baseline fit again scores the champion's pinball but for the last bits (0.3354857501277283
    against 0.33548575012772835): the test on the daily loss differences says t 0, and the champion stays."""
    rng = np.random.default_rng(0)
    days = pd.bdate_range("2020-01-01", periods=300)
    predictions = pd.DataFrame(
        {
            "ticker": np.repeat(["AAA", "BBB"], 300),
            "base_date": np.tile(days, 2),
            "horizon": 1,
            "base_price": 100.0,
            "actual": 100.0 * np.exp(rng.normal(0, 0.01, 600)),
        }
    )
    predictions["naive"] = predictions["champion"] = predictions["base_price"]
    levels = (0.1, 0.5, 0.9)
    garch = np.outer(rng.uniform(0.005, 0.02, 600), [-1.28, 0.0, 1.28])  # (rows, Q) log-return quantiles
    noisy = garch * (1 + 1e-12)  # the same fit, but for the last bits
    y = outcomes(predictions)
    lower, higher = sorted((garch, noisy), key=lambda q: pinball(100 * q, y, levels).mean())
    quantiles = {"garch": lower, CHAMPION: higher}  # the new one is "better", in the 12th digit
    tails, comparisons, point_tests = risk_tables(predictions, ["garch", CHAMPION], quantiles, levels, 1)
    metrics = {
        n: {
            "pinball": float(pinball(100 * q, outcomes(predictions), levels).mean()),
            "coverage_80": 0.8,
            "coverage_90": 0.9,
        }
        for n, q in quantiles.items()
    }
    ev = Evaluation(metrics, {}, {}, 0.0, 600, "3", comparisons=comparisons, point_tests=point_tests, tails=tails)
    assert 0 < metrics[CHAMPION]["pinball"] - metrics["garch"]["pinball"] < 1e-9
    decision = promotion_decision(ev, RegisterConfig())
    assert decision.winner == "champion" and "ties with its own" in decision.reason and "float noise" in decision.reason


def test_gate_scores_by_the_declared_primary_score():
    ev = evaluation(model={**scores(0.50), "winkler_80": 9.0}, ewma={**scores(0.55), "winkler_80": 8.0})
    assert promotion_decision(ev, RegisterConfig()).winner == "model"
    assert promotion_decision(ev, RegisterConfig(primary_score="winkler_80")).winner == "ewma"


def test_register_config_names_bad_values():
    with pytest.raises(ValueError, match="(?s)min_improvement.*greater than or equal to 0.*-0.1"):
        RegisterConfig(min_improvement=-0.1)
    with pytest.raises(ValueError, match="model_name"):
        RegisterConfig(model_name=" ")
    with pytest.raises(ValueError, match="(?s)primary_score.*'pinball', 'winkler_80' or 'winkler_90'.*crps"):
        RegisterConfig(primary_score="crps")
    with pytest.raises(ValueError, match="(?s)coverage_tolerance.*less than or equal to 0.5.*0.7"):
        RegisterConfig(coverage_tolerance=0.7)
    with pytest.raises(ValueError, match="(?s)min_skill.*less than 1"):
        RegisterConfig(min_skill=1.0)
    assert RegisterConfig().updated(min_skill=-0.5).min_skill == -0.5
