"""The console table of a training run's metrics: every forecaster overall; per ticker, the model beside naive
and its rivals (`RIVALS`: garch, ewma)."""

from __future__ import annotations

import math

from tickerflow_model.evaluation import RIVALS, rank_tickers
from tickerflow_model.metrics import TABLE_METRICS

TICKERS_SHOWN = 5  # per-ticker rows: every ticker up to 2 * this many, else the best and the worst this many
PER_TICKER = ("model", "naive", *RIVALS)  # per ticker: the GRU beside naive and the classic volatility models


def shown_tickers(per_ticker: dict) -> list[str]:
    """Tickers ranked by the model's skill (as the evaluation ranks them): all, or the best and the worst."""
    ranked = list(rank_tickers(per_ticker).index)
    if len(ranked) <= 2 * TICKERS_SHOWN:
        return sorted(ranked)
    return ranked[:TICKERS_SHOWN] + ranked[-TICKERS_SHOWN:]


def metric_text(value: float) -> str:
    """Four decimals, or four significant digits where decimals would hide the value (prices around
    1e-300 have errors that small; a 0.0000 would read as a perfect score)."""
    return f"{value:.4f}" if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 1e9 else f"{value:.4g}"


def format_metrics(metrics: dict[str, dict[str, float]], per_ticker: dict[str, dict[str, dict[str, float]]]) -> str:
    """Overall and per-ticker metrics: point metrics in price units, distribution scores in % log return."""
    names = [c for c in TABLE_METRICS if any(c in m for m in metrics.values())]
    tickers = shown_tickers(per_ticker)
    rows = [("all", k, v) for k, v in metrics.items()]
    rows += [(t, k, v) for t in tickers for k, v in per_ticker[t].items() if k in PER_TICKER]
    scope_w = max([len("scope")] + [len(r[0]) for r in rows])
    name_w = max([len("forecaster")] + [len(r[1]) for r in rows])
    width = {n: max(len(n), 9) for n in names}
    lines = [f"{'scope':<{scope_w}}  {'forecaster':<{name_w}}  " + "  ".join(f"{n:>{width[n]}}" for n in names)]
    for scope, name, m in rows:
        cells = [f"{metric_text(m[n]):>{width[n]}}" if n in m else f"{'-':>{width[n]}}" for n in names]
        lines.append(f"{scope:<{scope_w}}  {name:<{name_w}}  " + "  ".join(cells))
    if len(tickers) < len(per_ticker):
        lines.append(
            f"(the {TICKERS_SHOWN} best and {TICKERS_SHOWN} worst of {len(per_ticker)} tickers by the model's skill; "
            "all of them: evaluation/metrics_per_ticker.csv in the MLflow run)"
        )
    elif per_ticker:
        lines.append(
            f"(per ticker: {', '.join(PER_TICKER)}; every forecaster: evaluation/metrics_per_ticker.csv in the MLflow run)"
        )
    return "\n".join(lines)
