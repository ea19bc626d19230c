"""Conformalized quantile regression (CQR), fit on the validation split per horizon step.

Method: Y. Romano, E. Patterson and E. Candes, "Conformalized Quantile Regression", NeurIPS 2019.
For a central interval [q_lo, q_hi] of nominal coverage 1 - a, the conformity score of a
calibration window is E = max(q_lo - y, y - q_hi) (negative when y is inside); with n windows, the
margin Q is the ceil((n + 1)(1 - a)) / n empirical quantile of the scores, and the calibrated
interval is [q_lo - Q, q_hi + Q]. Under exchangeability its coverage is at least 1 - a, whatever
the network got wrong. Q < 0 narrows an interval that was too wide.

Three refinements, all in the paper's spirit:

- Scores are taken in units of each window's volatility scale s (the network's sigma * sqrt(k)),
  and the margin is applied as Q * s: the locally adaptive form, so a calm day's interval is not
  widened by what a turbulent day needed.
- By default a margin only widens (Q is kept at least 0; `narrow=True` gives the paper's two-sided
  margin). An interval that covered more than nominal on the validation split is left as the network
  made it: the coverage guarantee holds all the same (the interval is at least the CQR one), and
  validation years calmer than the ones that follow would otherwise narrow every later interval. On
  the sample, two-sided margins fit on 2009-2011 took the 80% interval to 77.1-77.7% coverage over
  2011-2013; widening only, to 78.3-79.5% (docs/BENCHMARKS.md, "Conformal margins").
- Calibrated quantiles stay monotone: after the margins, each level is clipped to lie outside its
  inner neighbour (a running min below the median, a running max above). That only ever widens an
  interval, so the coverage guarantee of each interval still holds.
"""

from __future__ import annotations

import math

import numpy as np

from .quantiles import central_pairs, median_index


def fit_cqr_margins(
    q: np.ndarray, y: np.ndarray, scale: np.ndarray, levels: tuple[float, ...], *, narrow: bool = False
) -> np.ndarray:
    """Margins (H, P), in units of `scale`, one per horizon step and central interval (widest first);
    at least 0 unless `narrow`.

    Args:
        q: uncalibrated quantiles of the calibration windows, (N, H, Q).
        y: their outcomes, (N, H), same units as q.
        scale: each window's positive scale per step, (N, H).
        levels: the Q quantile levels (symmetric around 0.5).
    """
    q, y, scale = np.asarray(q, np.float64), np.asarray(y, np.float64), np.asarray(scale, np.float64)
    n, horizon, _ = q.shape
    if n == 0:
        raise ValueError("conformal calibration needs at least one calibration window, got 0")
    pairs = central_pairs(levels)
    margins = np.zeros((horizon, len(pairs)))
    for p, (lo, hi, coverage) in enumerate(pairs):
        scores = np.maximum(q[:, :, lo] - y, y - q[:, :, hi]) / scale  # (N, H)
        # the finite-sample corrected level; with too few windows for it, the largest score
        rank = min(math.ceil((n + 1) * coverage), n)
        margins[:, p] = np.sort(scores, axis=0)[rank - 1]  # (H,)
    return margins if narrow else np.maximum(margins, 0.0)


def apply_cqr(q: np.ndarray, scale: np.ndarray, margins: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """Calibrated quantiles (N, H, Q) from raw ones (N, H, Q), scale (N, H) and margins (H, P); monotone in Q."""
    out = np.array(q, dtype=np.float64, copy=True)
    scale = np.asarray(scale, np.float64)
    margins = np.asarray(margins, np.float64)
    for p, (lo, hi, _) in enumerate(central_pairs(levels)):
        shift = margins[None, :, p] * scale  # (N, H)
        out[:, :, lo] -= shift
        out[:, :, hi] += shift
    return outward_monotone(out, levels)


def outward_monotone(q: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """`q` (..., Q) with each lower level at most its inner neighbour and each upper level at least: outward
    from the median, so a correction only ever widens where it would cross."""
    m = median_index(levels)
    q[..., : m + 1] = np.minimum.accumulate(q[..., m::-1], axis=-1)[..., ::-1]
    q[..., m:] = np.maximum.accumulate(q[..., m:], axis=-1)
    return q


def adaptive_scales(q: np.ndarray, y: np.ndarray, levels: tuple[float, ...], gamma: float, lag: int = 1) -> np.ndarray:
    """Adaptive conformal inference in its scale form (after I. Gibbs and E. Candes, "Adaptive Conformal
    Inference Under Distribution Shift", NeurIPS 2021): the factor (N, P) each forecast of one series (in
    time order) stretches its central intervals by, about the median. The log factor of an interval moves by
    `gamma * (miss - nominal miss rate)` each time an outcome arrives, `lag` forecasts later (a k-day-ahead
    forecast's outcome is known k days on): an interval that misses too often widens, one that never misses
    narrows, and the long-run miss rate follows the nominal one whatever the regime.

    Args:
        q: the series' quantiles (N, Q), in the units of y (log returns); y: its outcomes (N,).
    """
    q, y = np.asarray(q, np.float64), np.asarray(y, np.float64)
    pairs = central_pairs(levels)
    lo, hi = [p[0] for p in pairs], [p[1] for p in pairs]
    nominal_miss = np.array([1.0 - p[2] for p in pairs])  # (P,)
    med = q[:, median_index(levels)]
    log_scale = np.zeros(len(pairs))
    scales = np.ones((len(q), len(pairs)))
    for i in range(len(q)):
        j = i - lag  # the latest forecast whose outcome is known when forecast i is made
        if j >= 0:
            stretched_lo = med[j] + scales[j] * (q[j, lo] - med[j])
            stretched_hi = med[j] + scales[j] * (q[j, hi] - med[j])
            miss = (y[j] < stretched_lo) | (y[j] > stretched_hi)
            log_scale += gamma * (miss - nominal_miss)
        scales[i] = np.exp(log_scale)
    return scales


def apply_scales(q: np.ndarray, scales: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """Quantiles (N, Q) with each central interval stretched about the median by its factor (N, P)."""
    out = np.array(q, dtype=np.float64, copy=True)
    med = out[:, median_index(levels)][:, None]
    for p, (lo, hi, _) in enumerate(central_pairs(levels)):
        out[:, lo] = med[:, 0] + scales[:, p] * (out[:, lo] - med[:, 0])
        out[:, hi] = med[:, 0] + scales[:, p] * (out[:, hi] - med[:, 0])
    return outward_monotone(out, levels)
