"""Live metrics: forecasts joined with the closes that followed, scored over rolling windows of days.

No Prefect, no MLflow: frames in, frames out. A "day" is the target date of a forecast, the day its
close became known; each rolling window covers the last `window` such days with at least one scored
forecast (fewer at the start, never fewer than `min_days`). Quantile scores use the levels the forecasts
were made at (`levels`, or each stored row's `quantile_levels`), never levels read from column names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .quantiles import (
    INTERVALS,
    LEGACY_LEVELS,
    REQUIRED_INTERVALS,
    central_pairs,
    interval_index,
    interval_tag,
    levels_from_text,
    levels_text,
    pinball,
    quantile_columns,
    scored_intervals,
)

# live interval coverage, by name -> its nominal coverage (the central intervals that evaluation scores)
NOMINAL_COVERAGE = {f"live_coverage_{interval_tag(c)}": c for c in INTERVALS}
POINT_METRICS = ("live_rmse", "live_mae", "live_skill")
QUANTILE_METRICS = ("live_pinball", *NOMINAL_COVERAGE)
LEVELS_COLUMN = "quantile_levels"  # a stored forecast's levels (`quantiles.levels_text`); '' for point forecasts


def scored_levels(frame: pd.DataFrame, levels) -> tuple[float, ...]:
    """`levels` when the frame carries every one of their columns with values, else () (point forecasts only)."""
    levels = tuple(levels or ())
    cols = quantile_columns(levels)
    if not levels or any(c not in frame.columns for c in cols) or not frame[cols].notna().all().all():
        return ()
    return levels


def join_realized(forecasts: pd.DataFrame, closes: pd.DataFrame) -> pd.DataFrame:
    """Forecasts (`ticker, date, base_close, forecast_close[, q05..q95], model_version, ...`) whose target
    `date` has a close in `closes` (`ticker, date, close`), with that close as `realized`."""
    realized = closes[["ticker", "date", "close"]].rename(columns={"close": "realized"})
    realized = realized.assign(ticker=realized["ticker"].astype(str), date=pd.to_datetime(realized["date"]))
    left = forecasts.assign(ticker=forecasts["ticker"].astype(str), date=pd.to_datetime(forecasts["date"]))
    out = left.merge(realized.dropna(subset=["realized"]), on=["ticker", "date"], how="inner")
    return out.sort_values(["model_version", "date", "ticker", "horizon"]).reset_index(drop=True)


def daily_sums(scored: pd.DataFrame, levels=()) -> pd.DataFrame:
    """Per (model_version, day): the sums the rolling metrics are built from, so windows add up exactly.

    `levels` are the quantile levels the forecasts were made at (their columns `quantile_columns(levels)`).
    """
    err = scored["forecast_close"] - scored["realized"]
    naive = scored["base_close"] - scored["realized"]  # "tomorrow = today" from the forecast's base day
    parts = {
        "model_version": scored["model_version"].astype(str),
        "day": scored["date"],
        "n": 1.0,
        "sq": err**2,
        "abs": err.abs(),
        "naive_sq": naive**2,
    }
    levels = scored_levels(scored, levels)
    if levels:
        y = scored["realized"].to_numpy(np.float64)  # (N,)
        q = scored[quantile_columns(levels)].to_numpy(np.float64)  # (N, Q)
        parts["pinball"] = pinball(q, y, levels)
        for coverage in scored_intervals(levels):  # the intervals the forecasts' levels bound
            lo, hi = interval_index(levels, coverage)
            parts[f"live_coverage_{interval_tag(coverage)}"] = ((q[:, lo] <= y) & (y <= q[:, hi])).astype(float)
    return pd.DataFrame(parts).groupby(["model_version", "day"], sort=True).sum().reset_index()


def rolling_live_metrics(
    scored: pd.DataFrame,
    windows: tuple[int, ...] = (20, 60),
    min_days: int = 5,
    levels=(),
) -> pd.DataFrame:
    """One row per (model_version, day, window): `live_rmse`, `live_mae`, `live_skill` (1 - RMSE / naive
    RMSE) and, when the forecasts carry quantiles at `levels`, `live_pinball`, `live_coverage_80`,
    `live_coverage_90`; `n` is the number of forecasts in the window, `days` the number of days."""
    if scored.empty:
        return pd.DataFrame(columns=["model_version", "day", "window", "days", "n", *POINT_METRICS])
    sums = daily_sums(scored, levels)
    extra = [c for c in ("pinball", *NOMINAL_COVERAGE) if c in sums.columns]
    frames = []
    for version, g in sums.groupby("model_version", sort=True):
        g = g.sort_values("day").reset_index(drop=True)
        for window in windows:
            r = g[["n", "sq", "abs", "naive_sq", *extra]].rolling(window, min_periods=min_days).sum()
            days = g["n"].rolling(window, min_periods=min_days).count()
            out = pd.DataFrame({"model_version": version, "day": g["day"], "window": window, "days": days, "n": r["n"]})
            rmse = np.sqrt(r["sq"] / r["n"])
            naive_rmse = np.sqrt(r["naive_sq"] / r["n"])
            out["live_rmse"] = rmse
            out["live_mae"] = r["abs"] / r["n"]
            out["live_skill"] = np.where(naive_rmse > 0, 1 - rmse / naive_rmse.where(naive_rmse > 0), np.nan)
            if "pinball" in extra:
                out["live_pinball"] = r["pinball"] / r["n"]
                for name in NOMINAL_COVERAGE:
                    if name in r:
                        out[name] = r[name] / r["n"]
            frames.append(out.dropna(subset=["n"]))
    return pd.concat(frames, ignore_index=True).astype({"window": int, "days": int, "n": int})


@dataclass(frozen=True)
class Thresholds:
    """When a rolling live metric counts as degraded; None switches a rule off.

    min_skill: live skill below it; max_rmse: live RMSE above it (price units);
    coverage_tolerance: an interval's live coverage further than this from its nominal level.
    """

    min_skill: float | None = None
    max_rmse: float | None = None
    coverage_tolerance: float | None = None


def breaches(metrics: pd.DataFrame, thresholds: Thresholds) -> pd.DataFrame:
    """Per row of `metrics` (one version, one window, by day): `breached` and which rule(s) in `reasons`."""
    reasons = pd.Series([[] for _ in range(len(metrics))], index=metrics.index, dtype=object)

    def flag(mask: pd.Series, text) -> None:
        for i in mask[mask.fillna(False)].index:
            reasons[i] = reasons[i] + [text(metrics.loc[i])]

    if thresholds.min_skill is not None:
        flag(
            metrics["live_skill"] < thresholds.min_skill,
            lambda r: f"live_skill {r['live_skill']:+.4f} < {thresholds.min_skill:+.4f}",
        )
    if thresholds.max_rmse is not None:
        flag(
            metrics["live_rmse"] > thresholds.max_rmse,
            lambda r: f"live_rmse {r['live_rmse']:.4f} > {thresholds.max_rmse:.4f}",
        )
    if thresholds.coverage_tolerance is not None:  # the intervals every model forecasts (80% and 90%)
        for name, nominal in NOMINAL_COVERAGE.items():
            if name in metrics.columns and nominal in REQUIRED_INTERVALS:
                flag(
                    (metrics[name] - nominal).abs() > thresholds.coverage_tolerance,
                    lambda r, n=name, nom=nominal: (
                        f"{n} {r[n]:.3f} outside {nom:.2f} ± {thresholds.coverage_tolerance:.2f}"
                    ),
                )
    out = metrics.assign(reasons=reasons.map("; ".join))
    return out.assign(breached=out["reasons"] != "")


def trailing_streak(breached: pd.Series) -> int:
    """How many of the last values in a row are True."""
    values = breached.to_numpy(bool)[::-1]
    return int(np.argmin(values)) if not values.all() else len(values)


LIVE_METRICS = POINT_METRICS + QUANTILE_METRICS  # what a monitoring run logs, per window


def score_stored(
    stored: pd.DataFrame, prices: pd.DataFrame, as_of, windows: tuple[int, ...], min_days: int
) -> tuple[pd.DataFrame, int]:
    """Stored forecasts whose target day has a close in `prices` (up to `as_of`), scored per model:
    (rolling_live_metrics with `model_name`, forecasts scored)."""
    scored = realized_rows(stored, prices, as_of)
    return score_rows(scored, windows, min_days), len(scored)


def realized_rows(stored: pd.DataFrame, prices: pd.DataFrame, as_of) -> pd.DataFrame:
    """The stored forecasts whose target day has a close in `prices` (up to `as_of`), with it as `realized`.

    Each stored row is joined to the price column it forecast (`price_column`; `close` when the store
    predates it or `prices` lacks it), and keeps the levels stored with it (`quantile_levels`; a store
    written before that column held the default levels).
    """
    if "price_column" not in stored.columns:
        stored = stored.assign(price_column="close")
    parts = []
    for column, rows in stored.groupby(stored["price_column"].fillna("close"), sort=True):
        column = column if column in prices.columns else "close"
        parts.append(join_realized(rows, prices[["ticker", "date", column]].rename(columns={column: "close"})))
    scored = pd.concat(parts, ignore_index=True)
    scored = scored[scored["date"] <= as_of]
    if LEVELS_COLUMN not in scored.columns:
        scored = scored.assign(**{LEVELS_COLUMN: levels_text(LEGACY_LEVELS)})
    return scored


def score_rows(scored: pd.DataFrame, windows: tuple[int, ...], min_days: int) -> pd.DataFrame:
    """rolling_live_metrics of `realized_rows`, per model and levels, with `model_name`."""
    levels_of = scored[LEVELS_COLUMN].fillna("").astype(str)
    frames = [
        rolling_live_metrics(g, windows, min_days, levels_from_text(text)).assign(model_name=name)
        for (name, text), g in scored.groupby([scored["model_name"], levels_of], sort=True)
    ]
    empty = rolling_live_metrics(scored.iloc[:0]).assign(model_name=pd.Series(dtype=str))
    return pd.concat(frames, ignore_index=True) if frames else empty


def adaptive_log_factors(scored: pd.DataFrame, levels: tuple[float, ...], gamma: float) -> pd.DataFrame:
    """Adaptive conformal margins of the live loop (`calibration.adaptive_scales`, whose recursion this is):
    per ticker and horizon step, the log factor of each central interval, widest first, for the next
    forecast: `gamma` times the sum over the served forecasts whose outcome is known of (miss - nominal miss
    rate). The served intervals already carry the factors they were served with, so the sum over their
    misses is the recursion's state. `scored`: one model version's `realized_rows` at `levels`.
    """
    pairs = central_pairs(levels)
    columns = [f"p{p}" for p in range(len(pairs))]
    if scored.empty:
        return pd.DataFrame(columns=["ticker", "horizon", *columns])
    q = scored[quantile_columns(levels)].to_numpy(np.float64)  # (N, Q), in price units
    realized = scored["realized"].to_numpy(np.float64)
    excess = {
        col: ((realized < q[:, lo]) | (realized > q[:, hi])).astype(np.float64) - (1.0 - coverage)
        for col, (lo, hi, coverage) in zip(columns, pairs)
    }
    frame = pd.DataFrame({"ticker": scored["ticker"].astype(str), "horizon": scored["horizon"], **excess})
    return (gamma * frame.groupby(["ticker", "horizon"])[columns].sum()).reset_index()


def thresholds_from_test(
    test_skill: float | None,
    test_rmse: float | None,
    skill_margin: float | None,
    rmse_ratio: float | None,
    coverage_tolerance: float | None,
) -> Thresholds:
    """The rule's thresholds from the champion's own test figures; a missing figure or margin turns its rule off."""
    return Thresholds(
        min_skill=None if test_skill is None or skill_margin is None else test_skill - skill_margin,
        max_rmse=None if test_rmse is None or rmse_ratio is None else test_rmse * rmse_ratio,
        coverage_tolerance=coverage_tolerance,
    )


@dataclass(frozen=True)
class RuleState:
    """Where one version's rule window stands on its last scored day."""

    streak: int  # scored days in a row, up to the last, past a threshold
    streak_start: pd.Timestamp | None  # the first day of that streak (None: no streak)
    latest: dict[str, float | str]  # the last day's live figures, and `day`
    reasons: str  # which threshold(s) the last day crossed


def rule_state(metrics: pd.DataFrame, thresholds: Thresholds) -> RuleState:
    """`metrics`: one version, one window, one row per day (any order)."""
    flagged = breaches(metrics.sort_values("day").reset_index(drop=True), thresholds)
    streak = trailing_streak(flagged["breached"])
    last = flagged.iloc[-1]
    latest: dict[str, float | str] = {k: float(last[k]) for k in LIVE_METRICS if k in last and pd.notna(last[k])}
    latest["day"] = f"{last['day']:%Y-%m-%d}"
    start = flagged["day"].iloc[len(flagged) - streak] if streak else None
    return RuleState(streak, start, latest, last["reasons"])
