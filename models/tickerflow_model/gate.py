"""The promotion gate: which forecaster should be champion, by its scores on the test windows. Pure logic.

Every judgement that noise could decide is a test on the test windows, one-sided at `significance`, on
daily loss differences with a Newey-West variance (`risk.dm_test`): a point forecast is vetoed only when it
is significantly worse than naive, and a challenger replaces the champion only when its primary score is
significantly lower. With `coverage_test: kupiec` an interval fails when Kupiec's test rejects its miss
rate at step 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from .baselines import DISTRIBUTION_BASELINES
from .blend import BLEND
from .config import RegisterConfig
from .evaluation import CHAMPION, Evaluation
from .quantiles import REQUIRED_INTERVALS, interval_tag
from .risk import kupiec_pof

GRU = "gru"  # the `forecaster` tag of the GRU's versions; a baseline's versions carry the baseline's name
# Relative score differences below this are ties: the same forecaster scored along two paths (fit now, and
# loaded from the registry) differs in the last bits, with a sign that no test should read as a gain.
TIE = 1e-9


@dataclass(frozen=True)
class Versus:
    """One forecaster against another on one score: `gain` (1 - its score / the other's) and the DM/HAC `t`,
    both positive when it is the better."""

    gain: float
    t: float

    def text(self) -> str:
        return f"{self.gain:+.2%}, t {self.t:.2f}"


@dataclass(frozen=True)
class GateDecision:
    winner: str  # an evaluation forecaster: "model", a distribution baseline, or "champion"
    reason: str
    missed: dict[str, list[str]]  # candidate -> the conditions it missed (empty: it passes)
    scores: dict[str, float]  # candidate -> primary score
    versus_champion: dict[str, Versus] = field(default_factory=dict)  # candidate -> against the champion

    @property
    def forecaster(self) -> str:
        """The winner's `forecaster` tag (None for the champion: read it from its version)."""
        return GRU if self.winner == "model" else self.winner


def candidates(evaluation: Evaluation, score: str) -> list[str]:
    """The forecasters that could be champion: the GRU, the distribution baselines, the blend, the current one."""
    names = [n for n in evaluation.metrics if n in ("model", CHAMPION, BLEND) or n in DISTRIBUTION_BASELINES]
    return [n for n in names if score in evaluation.metrics[n]]


def critical(config: RegisterConfig) -> float:
    """The one-sided normal quantile of the gate's tests: 1.645 at 5%."""
    return NormalDist().inv_cdf(1.0 - config.significance)


def coverage_misses(name: str, evaluation: Evaluation, config: RegisterConfig) -> list[str]:
    """Each required interval that does not cover as it should (`config.coverage_test`)."""
    m, out = evaluation.metrics[name], []
    for nominal in REQUIRED_INTERVALS:
        key = f"coverage_{interval_tag(nominal)}"
        if key not in m:
            out.append(f"no {nominal:.0%} interval")
        elif config.coverage_test == "tolerance" and abs(m[key] - nominal) > config.coverage_tolerance + 1e-12:
            out.append(
                f"{nominal:.0%} coverage {m[key]:.1%} is outside {nominal:.0%} +/- {config.coverage_tolerance:.1%}"
            )
        elif config.coverage_test == "kupiec":
            test = interval_kupiec(name, evaluation, nominal)
            if test is not None and test.p_value < config.significance:
                out.append(
                    f"the {nominal:.0%} interval missed {test.rate:.1%} of the step-1 outcomes (nominal "
                    f"{1 - nominal:.0%}): Kupiec p {test.p_value:.3g} < {config.significance:g}"
                )
    return out


def interval_kupiec(name: str, evaluation: Evaluation, nominal: float):
    """Kupiec's test of a central interval's misses at step 1 (below it or above it: 1 - nominal expected)."""
    tails = evaluation.tails
    mine = tails[(tails["forecaster"] == name) & (tails["horizon"] == 1)]
    lo, hi = (1 - nominal) / 2, (1 + nominal) / 2
    rows = mine[np.isclose(mine["level"], lo) | np.isclose(mine["level"], hi)]
    if len(rows) != 2:
        return None
    return kupiec_pof(int(rows["exceedances"].sum()), int(rows["n"].iloc[0]), 1.0 - nominal)


def missed_conditions(name: str, evaluation: Evaluation, config: RegisterConfig) -> list[str]:
    out = coverage_misses(name, evaluation, config)
    m, test = evaluation.metrics[name], evaluation.point_tests.get(name)
    if test is not None and test.t < -critical(config):
        out.append(
            f"its point forecast is significantly worse than naive (skill {m.get('skill', float('nan')):+.4f}, "
            f"DM t {test.t:.2f} < {-critical(config):.2f})"
        )
    if config.min_skill is not None and m.get("skill", -np.inf) < config.min_skill:
        out.append(f"skill vs naive {m.get('skill', float('nan')):+.4f} is below the minimum {config.min_skill:+.4f}")
    return out


def label(name: str, evaluation: Evaluation) -> str:
    if name == "model":
        return "the GRU"
    if name == CHAMPION:
        return f"champion v{evaluation.champion_version}"
    return name


def versus(evaluation: Evaluation, name: str, reference: str, score: str) -> Versus:
    """`name` against `reference` on `score` over every test forecast: the comparisons table's row for the
    pinball loss, the same test on the loss of another score."""
    row = evaluation.comparison(name, reference) if score == "pinball" else None
    if row is not None:
        return Versus(float(row["gain"]), float(row["t"]))
    dm = evaluation.versus(name, reference, score)
    return Versus(dm.gain, dm.t)


def ranking_text(names: list[str], scores: dict[str, float], evaluation: Evaluation) -> str:
    return ", ".join(f"{label(n, evaluation)} {scores[n]:.4f}" for n in sorted(names, key=lambda n: scores[n]))


def promotion_decision(evaluation: Evaluation, config: RegisterConfig) -> GateDecision:
    """The gate: the best by the primary score among the candidates that meet the conditions."""
    score: str = config.primary_score  # or "rmse" below
    names = candidates(evaluation, score)
    if not names:  # nothing gives quantiles: the point forecast decides, by RMSE
        score, names = "rmse", [n for n in ("model", CHAMPION) if n in evaluation.metrics]
    scores = {n: evaluation.metrics[n][score] for n in names}
    missed = {n: missed_conditions(n, evaluation, config) for n in names}
    passing = [n for n in names if not missed[n]]
    best = min(passing or names, key=lambda n: (scores[n], n != CHAMPION))
    ranking = ranking_text(names, scores, evaluation)
    against = {n: versus(evaluation, n, CHAMPION, score) for n in names if n != CHAMPION} if CHAMPION in names else {}
    not_compared = (
        f"; champion v{evaluation.champion_version} was not compared: {evaluation.champion_error}"
        if evaluation.champion_error
        else ""
    )
    if CHAMPION in names and best != CHAMPION and (not passing or CHAMPION in passing):
        test, z = against[best], critical(config)
        if abs(test.gain) <= TIE:
            reason = (
                f"champion v{evaluation.champion_version} stays: {label(best, evaluation)}'s {score} "
                f"{scores[best]:.4f} ties with its own (a relative difference of {abs(test.gain):.1e}, float noise; {ranking})"
            )
            return GateDecision(CHAMPION, reason, missed, scores, against)
        if not (test.t > z and test.gain > config.min_improvement):
            reason = (
                f"champion v{evaluation.champion_version} stays: {label(best, evaluation)}'s {score} "
                f"{scores[best]:.4f} against its {scores[CHAMPION]:.4f} ({test.text()}) is not significantly lower "
                f"(one-sided {config.significance:g}: t > {z:.2f}"
                + (f", and a gain over {config.min_improvement:.2%}" if config.min_improvement else "")
                + f"; {ranking})"
            )
            return GateDecision(CHAMPION, reason, missed, scores, against)
    return GateDecision(
        best,
        winner_reason(best, evaluation, config, score, scores, missed, passing, against) + not_compared,
        missed,
        scores,
        against,
    )


def winner_reason(
    best: str,
    evaluation: Evaluation,
    config: RegisterConfig,
    score: str,
    scores: dict[str, float],
    missed: dict[str, list[str]],
    passing: list[str],
    against: dict[str, Versus],
) -> str:
    ranking = ranking_text(list(scores), scores, evaluation)
    rivals = [r for r in ("garch", CHAMPION) if r in scores and r != best]
    edge = "; ".join(
        f"{versus(evaluation, best, r, score).text()} vs {label(r, evaluation)}"
        if r != CHAMPION
        else f"{against[best].text()} vs {label(r, evaluation)}"
        for r in rivals
        if r != CHAMPION or best in against
    )
    edge = f" ({edge})" if edge else ""
    rule = (
        f"coverage within +/-{config.coverage_tolerance:.1%}"
        if config.coverage_test == "tolerance"
        else f"coverage not rejected by Kupiec's test at {config.significance:g}"
    )
    if passing:
        return (
            f"{label(best, evaluation)} has the best {score} of the forecasters that meet the gate{edge} "
            f"({ranking}; {rule}; no point forecast significantly worse than naive at {config.significance:g})"
        )
    return (
        f"no forecaster meets every condition; {label(best, evaluation)} has the best {score}{edge} and is "
        f"champion although {'; '.join(missed[best])} ({ranking})"
    )
