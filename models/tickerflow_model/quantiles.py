"""Quantile levels, their column names, and the pinball (multi-quantile) loss in numpy and in torch.

The network's distributional output is a set of quantiles of the cumulative log return at fixed
levels. Everything that names a quantile column (forecast frames, the pyfunc output, metrics, the
forecast store) goes through `quantile_column`, so there is one spelling of "q05"; the levels
themselves travel with the model (its spec) and with every stored forecast (`levels_text`), and are
never parsed back from column names.
"""

from __future__ import annotations

# The 1% and 2.5% tails on each side are the risk desk's: 99% and 97.5% VaR (Basel's market risk levels),
# and the 98% and 95% central intervals.
QUANTILE_LEVELS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.975, 0.99)
# The levels of models and stored forecasts from before the tails: what a bundle or a forecast store without
# its levels written down holds.
LEGACY_LEVELS: tuple[float, ...] = (0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95)


def quantile_column(level: float) -> str:
    """0.05 -> 'q05', 0.5 -> 'q50', 0.975 -> 'q975' (percent, two digits, decimals only when needed)."""
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"a quantile level must be in (0, 1), got {level!r}")
    pct = round(float(level) * 100, 6)
    if pct == int(pct):
        return f"q{int(pct):02d}"
    # 0.975 -> 97.5 -> 'q975', 0.025 -> 'q025': keeps the order of levels, a valid identifier
    whole, frac = f"{pct:g}".split(".")
    return f"q{int(whole):02d}{frac}"


def quantile_columns(levels: tuple[float, ...] = QUANTILE_LEVELS) -> list[str]:
    return [quantile_column(q) for q in levels]


def validate_levels(levels) -> tuple[float, ...]:
    """Strictly increasing levels in (0, 1), symmetric around 0.5 and including it -> a tuple.

    Symmetry pairs every lower level with an upper one, so each pair is a central interval that
    conformal calibration can adjust; the median anchors the non-crossing construction.
    """
    try:
        out = tuple(float(q) for q in levels)
    except (TypeError, ValueError):
        raise ValueError(f"quantiles must be a sequence of numbers, got {levels!r}") from None
    if not out or any(not 0.0 < q < 1.0 for q in out):
        raise ValueError(f"quantiles must be levels in (0, 1), got {levels!r}")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"quantiles must be strictly increasing, got {levels!r}")
    if not any(abs(q - 0.5) < 1e-9 for q in out):
        raise ValueError(f"quantiles must include the median 0.5, got {levels!r}")
    if any(abs(a + b - 1.0) > 1e-9 for a, b in zip(out, reversed(out))):
        raise ValueError(f"quantiles must be symmetric around 0.5 (each q with 1 - q), got {levels!r}")
    if len({quantile_column(q) for q in out}) != len(out):
        raise ValueError(f"quantiles {levels!r} give clashing column names")
    return out


def median_index(levels: tuple[float, ...]) -> int:
    return min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5))


def central_pairs(levels: tuple[float, ...]) -> list[tuple[int, int, float]]:
    """(lower index, upper index, nominal coverage) of each central interval, widest first."""
    m = median_index(levels)
    return [(i, len(levels) - 1 - i, round(1.0 - 2.0 * levels[i], 12)) for i in range(m)]


def levels_text(levels) -> str:
    """(0.05, 0.5, 0.95) -> '0.05,0.5,0.95': the levels as one string column of a stored forecast."""
    return ",".join(f"{float(q):g}" for q in levels)


def levels_from_text(text: str) -> tuple[float, ...]:
    """'0.05,0.5,0.95' -> (0.05, 0.5, 0.95); '' -> () (forecasts without quantiles)."""
    return tuple(float(q) for q in str(text).split(",") if q.strip())


# Nominal coverage of the central intervals scored, where the levels bound them: q10-q90, q05-q95, q025-q975
# and q01-q99. The first two are required (the gate and the live rule read them); the others are scored when
# a model forecasts their levels.
INTERVALS = (0.80, 0.90, 0.95, 0.98)
REQUIRED_INTERVALS = (0.80, 0.90)


def interval_tag(coverage: float) -> str:
    """0.8 -> '80': the suffix of an interval's scores (coverage_80, width_80, winkler_80)."""
    return f"{round(coverage * 100):d}"


def scored_intervals(levels) -> tuple[float, ...]:
    """The intervals of INTERVALS whose two bounds are among `levels`."""
    levels = [float(q) for q in levels]
    return tuple(c for c in INTERVALS if all(any(abs(q - (1 + s * c) / 2) < 1e-9 for q in levels) for s in (-1, 1)))


def interval_index(levels, coverage: float) -> tuple[int, int]:
    """Indices of the levels that bound the central interval of nominal `coverage` (0.8 -> q10, q90)."""
    levels = [float(q) for q in levels]
    lo, hi = (1.0 - coverage) / 2.0, (1.0 + coverage) / 2.0
    try:
        return (
            next(i for i, q in enumerate(levels) if abs(q - lo) < 1e-9),
            next(i for i, q in enumerate(levels) if abs(q - hi) < 1e-9),
        )
    except StopIteration:
        raise ValueError(f"the {coverage:.0%} interval needs the levels {lo:g} and {hi:g}, got {levels}") from None


def require_scored_intervals(levels) -> tuple[float, ...]:
    """`levels`, when they bound every central interval in REQUIRED_INTERVALS (scoring, live coverage and the
    gate read them); otherwise a ValueError naming the missing levels and the levels given."""
    levels = tuple(float(q) for q in levels)
    lacking = [c for c in REQUIRED_INTERVALS if c not in scored_intervals(levels)]
    if lacking:
        bounds = sorted(round((1 + s * c) / 2, 12) for c in lacking for s in (-1, 1))
        names = " and ".join(f"{c:.0%}" for c in lacking)
        raise ValueError(
            f"must include {', '.join(f'{q:g}' for q in bounds)} (the {names} central interval(s) that scoring and the "
            f"gate read), got {list(levels)}"
        )
    return levels


# ---- the pinball loss: one numpy form (scores) and its torch twin (the training loss) -------------
# For level tau and quantile q the loss of one prediction is max(tau * (y - q), (tau - 1) * (y - q)):
# tau * (y - q) when the outcome lies above the quantile, (1 - tau) * (q - y) when below; it is
# minimised in expectation by the true tau-quantile (Koenker & Bassett, 1978).


def pinball(quantiles, actual, levels):
    """Pinball loss of each forecast, averaged over the levels: (..., Q), (...) -> (...); numpy, float64."""
    import numpy as np  # here, not at the top: the config module reads the levels with the standard library only

    tau = np.asarray(levels, dtype=np.float64)  # (Q,)
    diff = np.asarray(actual, dtype=np.float64)[..., None] - np.asarray(quantiles, dtype=np.float64)  # (..., Q)
    return np.mean(np.maximum(tau * diff, (tau - 1.0) * diff), axis=-1)


def pinball_loss(pred, target, levels):
    """Mean pinball loss over all elements and levels: `pinball(...).mean()` on torch tensors, differentiable.

    pred (..., Q) are quantiles at `levels`, target (...) the outcome.
    """
    import torch  # here, not at the top: column names and levels are used where torch is not needed

    tau = torch.as_tensor(levels, dtype=pred.dtype, device=pred.device)  # (Q,)
    diff = target.unsqueeze(-1) - pred  # (..., Q)
    return torch.mean(torch.maximum(tau * diff, (tau - 1.0) * diff))
