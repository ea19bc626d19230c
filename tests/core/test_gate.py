"""The promotion gate (core): the best forecaster by the declared score, its conditions, and its reasons."""

from __future__ import annotations

import pytest
from gate_scores import evaluation, scores

from tickerflow_model.config import RegisterConfig
from tickerflow_model.gate import promotion_decision


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


def test_gate_keeps_point_skill_as_a_second_condition():
    ev = evaluation(model=scores(0.50, skill=-0.02), ewma=scores(0.55))
    decision = promotion_decision(ev, RegisterConfig())
    assert (
        decision.winner == "ewma"
        and "skill vs naive -0.0200 is below the minimum +0.0000" in decision.missed["model"][0]
    )
    assert promotion_decision(ev, RegisterConfig(min_skill=-0.05)).winner == "model"


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
