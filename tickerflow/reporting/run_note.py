"""The story of a training run, told where a person lands first: the note at the top of its MLflow run page
(the gate's verdict and the champion, the GRU against garch and ewma, its coverage), and the headline figures
under `headline/`, which the run page's Model metrics tab shows as its first section.

MLflow 3's run page shows a description in a box 100 px high and hides the rest behind "Show more", under a
fading gradient: four lines of its 18 px text fit, a fifth does not. So the note is four lines that do not wrap
at 1600 px, and the gate's full reason stays the run's tag `promotion_reason` and the `promotion-decision`
artifact.

The MLflow UI groups a run's metric charts by the prefix before the last '/', sorts the prefixed sections by
name and puts the metrics without a prefix (every other key of a training run) in "Model metrics", after
them. So the few headline figures are logged a second time under one prefix, and no existing key changes.
"""

from __future__ import annotations

import math
import re

from tickerflow.reporting.evaluation import OVERVIEW_RIVAL, ticker_gains
from tickerflow.tasks.register import Registration
from tickerflow_model.evaluation import RIVALS, Evaluation

HEADLINE = "headline/"  # the prefix of the headline figures: the first section of the Model metrics tab
COVERAGES = (80, 90, 98)  # the central intervals whose coverage the note shows against nominal
LINE_CHARS = 140  # the visible characters of a note line that fit on one line of the run page at 1600 px


def run_note(evaluation: Evaluation, registration: Registration) -> str:
    """The run's note in markdown, four lines (one paragraph): the gate's verdict and the champion, the GRU
    against each rival (both pinballs, its gain, the HAC t of the difference, the tickers it wins), the coverage
    of its intervals against nominal and its point skill."""
    model = evaluation.metrics.get("model", {})
    coverage = ", ".join(f"{c}% → {model[f'coverage_{c}']:.1%}" for c in COVERAGES if f"coverage_{c}" in model)
    lines = [
        verdict(registration),
        *(rival_lines(evaluation) or ["No rival was scored on these windows."]),
        (f"**Coverage**, nominal → actual: {coverage}. " if coverage else "")
        + f"**Skill vs naive** (RMSE): {evaluation.skill:+.4f} over {evaluation.n_windows} forecasts.",
    ]
    return "\n".join(lines) + "\n"


def verdict(registration: Registration) -> str:
    """Promoted or not, the champion after the run and, when it fits on the line, the gate's reason in short."""
    champion = (
        f"{registration.model_name} v{registration.champion_version} ({registration.champion_forecaster})"
        if registration.champion_version
        else "none"
    )
    line = f"**{'Promoted' if registration.promoted else 'Not promoted'}**: the champion is {champion}"
    reason = f"{line}. The gate: {without_asides(registration.reason)}."
    return reason if visible_length(reason) <= LINE_CHARS else line + "."


def visible_length(markdown: str) -> int:
    return len(re.sub(r"[*`]", "", markdown))


def rival_lines(evaluation: Evaluation) -> list[str]:
    """One line per rival the GRU was compared with: both pinballs, the GRU's gain, the HAC (Diebold-Mariano,
    Newey-West) t of the difference, and on how many tickers the GRU's pinball is the lower."""
    model = evaluation.metrics.get("model", {})
    lines = []
    for rival in RIVALS:
        row = evaluation.comparison("model", rival)
        if row is None or "pinball" not in model or "pinball" not in evaluation.metrics.get(rival, {}):
            continue
        gains = ticker_gains(evaluation, rival)
        lines.append(
            f"**The GRU vs {rival}**: pinball {model['pinball']:.4f} vs {evaluation.metrics[rival]['pinball']:.4f}, "
            f"**{row['gain']:+.2%}** (HAC t {row['t']:.2f}), lower on {int((gains > 0).sum())} of {len(gains)} tickers."
        )
    return lines


def without_asides(text: str) -> str:
    """`text` without its parenthesised asides (the ranking and the tests a gate's reason spells out in full;
    the whole reason is the run's tag `promotion_reason`)."""
    kept, depth = [], 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            kept.append(ch)
    words = " ".join("".join(kept).split())
    for mark in ";,.:":
        words = words.replace(f" {mark}", mark)
    return words.rstrip(" .")


def headline_metrics(evaluation: Evaluation, registration: Registration) -> dict[str, float]:
    """The figures the console leads with, under `headline/`: the GRU's pinball and coverage, its pinball gain
    (in %) and HAC t against garch, the point skill vs naive, and whether it was promoted. Seven charts: the
    first screen of the Model metrics tab at 1600x1000 shows six of them (the section sorts them by name)."""
    model = evaluation.metrics.get("model", {})
    out: dict[str, float] = {k: model[k] for k in ("pinball", "coverage_80", "coverage_90") if k in model}
    row = evaluation.comparison("model", OVERVIEW_RIVAL)
    if row is not None:
        out[f"pinball_gain_vs_{OVERVIEW_RIVAL}_pct"] = 100.0 * float(row["gain"])
        out[f"pinball_gain_vs_{OVERVIEW_RIVAL}_t"] = float(row["t"])
    out["skill_vs_naive"] = evaluation.skill
    out["promoted"] = float(registration.promoted)
    return {HEADLINE + k: float(v) for k, v in out.items() if math.isfinite(float(v))}
