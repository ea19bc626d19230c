"""The promotion gate: which forecaster should be champion, by its scores on the test windows. Pure logic."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .baselines import DISTRIBUTION_BASELINES
from .config import RegisterConfig
from .evaluation import CHAMPION, Evaluation

GRU = "gru"  # the `forecaster` tag of the GRU's versions; a baseline's versions carry the baseline's name


@dataclass(frozen=True)
class GateDecision:
    winner: str  # an evaluation forecaster: "model", a distribution baseline, or "champion"
    reason: str
    missed: dict[str, list[str]]  # candidate -> the conditions it missed (empty: it passes)
    scores: dict[str, float]  # candidate -> primary score

    @property
    def forecaster(self) -> str:
        """The winner's `forecaster` tag (None for the champion: read it from its version)."""
        return GRU if self.winner == "model" else self.winner


def candidates(evaluation: Evaluation, score: str) -> list[str]:
    """The forecasters that could be champion: the GRU, the distribution baselines, the current champion."""
    names = [n for n in evaluation.metrics if n == "model" or n == CHAMPION or n in DISTRIBUTION_BASELINES]
    return [n for n in names if score in evaluation.metrics[n]]


def missed_conditions(m: dict[str, float], config: RegisterConfig) -> list[str]:
    out = []
    for nominal in (0.80, 0.90):
        key = f"coverage_{round(nominal * 100)}"
        if key not in m:
            out.append(f"no {nominal:.0%} interval")
        elif abs(m[key] - nominal) > config.coverage_tolerance + 1e-12:
            out.append(
                f"{nominal:.0%} coverage {m[key]:.1%} is outside {nominal:.0%} +/- {config.coverage_tolerance:.1%}"
            )
    if m.get("skill", -np.inf) < config.min_skill:
        out.append(f"skill vs naive {m.get('skill', float('nan')):+.4f} is below the minimum {config.min_skill:+.4f}")
    return out


def label(name: str, evaluation: Evaluation) -> str:
    if name == "model":
        return "the GRU"
    if name == CHAMPION:
        return f"champion v{evaluation.champion_version}"
    return name


def promotion_decision(evaluation: Evaluation, config: RegisterConfig) -> GateDecision:
    """The gate: the best by the primary score among the candidates that meet the conditions."""
    score: str = config.primary_score  # or "rmse" below
    names = candidates(evaluation, score)
    if not names:  # nothing gives quantiles: the point forecast decides, by RMSE
        score, names = "rmse", [n for n in ("model", CHAMPION) if n in evaluation.metrics]
    scores = {n: evaluation.metrics[n][score] for n in names}
    missed = {n: missed_conditions(evaluation.metrics[n], config) for n in names}
    passing = [n for n in names if not missed[n]]
    best = min(passing or names, key=lambda n: (scores[n], n != CHAMPION))
    ranking = ", ".join(f"{label(n, evaluation)} {scores[n]:.4f}" for n in sorted(names, key=lambda n: scores[n]))
    not_compared = (
        f"; champion v{evaluation.champion_version} was not compared: {evaluation.champion_error}"
        if evaluation.champion_error
        else ""
    )
    if CHAMPION in names and best != CHAMPION and (not passing or CHAMPION in passing):
        bar = scores[CHAMPION] * (1 - config.min_improvement)
        if not scores[best] < bar:
            reason = (
                f"champion v{evaluation.champion_version} stays: {label(best, evaluation)}'s {score} {scores[best]:.4f} does not "
                f"beat its {scores[CHAMPION]:.4f} by more than {config.min_improvement:.2%} ({ranking})"
            )
            return GateDecision(CHAMPION, reason, missed, scores)
    if passing:
        reason = (
            f"{label(best, evaluation)} has the best {score} of the forecasters that meet the gate "
            f"({ranking}; coverage within +/-{config.coverage_tolerance:.1%}, skill >= {config.min_skill:+.4f})"
        )
    else:
        reason = (
            f"no forecaster meets every condition; {label(best, evaluation)} has the best {score} and is champion "
            f"although {'; '.join(missed[best])} ({ranking})"
        )
    return GateDecision(best, reason + not_compared, missed, scores)
