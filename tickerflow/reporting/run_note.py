"""The story of a training run, told where a person lands first: the note at the top of its MLflow run page
(the GRU against garch and ewma, its coverage, the gate's decision and the champion), and the headline figures
under `headline/`, which the run page's Model metrics tab shows as its first section.

The MLflow UI groups a run's metric charts by the prefix before the last '/', sorts the prefixed sections by
name and puts the metrics without a prefix (every other key of a training run) in "Model metrics", after
them. So the few headline figures are logged a second time under one prefix, and no existing key changes.
"""

from __future__ import annotations

import math

from tickerflow.reporting.evaluation import ticker_gains
from tickerflow.tasks.register import Registration
from tickerflow_model.evaluation import RIVALS, Evaluation

HEADLINE = "headline/"  # the prefix of the headline figures: the first section of the Model metrics tab
COVERAGES = (80, 90, 98)  # the central intervals whose coverage the note shows against nominal


def run_note(evaluation: Evaluation, registration: Registration) -> str:
    """The run's note, in markdown, short enough to read without scrolling: the gate's verdict as a title,
    its reason without the asides, the GRU against each rival (pinball, gain, HAC t, tickers won), the
    intervals' coverage, the point skill and the version this run registered."""
    model = evaluation.metrics.get("model", {})
    lines = [verdict(registration), "", f"The gate: {without_asides(registration.reason)}.", ""]
    lines += rivals_table(evaluation)
    coverage = [f"{c}% → {model[f'coverage_{c}']:.1%}" for c in COVERAGES if f"coverage_{c}" in model]
    if coverage:
        lines += ["", "**Coverage** of the GRU's intervals, nominal → actual: " + " · ".join(coverage)]
    lines += [
        "",
        f"Skill vs naive (RMSE) {evaluation.skill:+.4f} over {evaluation.n_windows} test forecasts. "
        f"This run registered {registration.model_name} v{registration.version} (`challenger`).",
        "Every figure: the `headline` section of Model metrics, then the rest; tables in Artifacts, `evaluation/`.",
    ]
    return "\n".join(lines) + "\n"


def verdict(registration: Registration) -> str:
    champion = (
        f"{registration.model_name} v{registration.champion_version} ({registration.champion_forecaster})"
        if registration.champion_version
        else "none"
    )
    return f"### {'Promoted' if registration.promoted else 'Not promoted'}: the champion is {champion}"


def rivals_table(evaluation: Evaluation) -> list[str]:
    """One row per rival the GRU was compared with: both pinballs, the GRU's gain, the HAC (Diebold-Mariano,
    Newey-West) t of the difference, and on how many tickers the GRU's pinball is the lower."""
    model = evaluation.metrics.get("model", {})
    rows = []
    for rival in RIVALS:
        row = evaluation.comparison("model", rival)
        if row is None or "pinball" not in model or "pinball" not in evaluation.metrics.get(rival, {}):
            continue
        gains = ticker_gains(evaluation, rival)
        rows.append(
            f"| {rival} | {model['pinball']:.4f} | {evaluation.metrics[rival]['pinball']:.4f} "
            f"| **{row['gain']:+.2%}** | {row['t']:.2f} | {int((gains > 0).sum())} of {len(gains)} tickers |"
        )
    if not rows:
        return ["No rival was scored on these windows."]
    header = "| the GRU vs | pinball: the GRU | pinball: rival | the GRU's gain | HAC t | the GRU lower on |"
    return [header, "|---|--:|--:|--:|--:|---|", *rows]


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
    """The figures the note and the console lead with, under `headline/`: the GRU's pinball and coverage, its
    pinball gain (in %) and HAC t against each rival, the point skill vs naive, and whether it was promoted."""
    model = evaluation.metrics.get("model", {})
    out: dict[str, float] = {k: model[k] for k in ("pinball", "coverage_80", "coverage_90") if k in model}
    for rival in RIVALS:
        row = evaluation.comparison("model", rival)
        if row is not None:
            out[f"pinball_gain_vs_{rival}_pct"] = 100.0 * float(row["gain"])
            out[f"pinball_gain_vs_{rival}_t"] = float(row["t"])
    out["skill_vs_naive"] = evaluation.skill
    out["promoted"] = float(registration.promoted)
    return {HEADLINE + k: float(v) for k, v in out.items() if math.isfinite(float(v))}
