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
    m = median_index(levels)
    # outward from the median: each lower level at most its inner neighbour, each upper level at least
    out[:, :, : m + 1] = np.minimum.accumulate(out[:, :, m::-1], axis=-1)[:, :, ::-1]
    out[:, :, m:] = np.maximum.accumulate(out[:, :, m:], axis=-1)
    return out
