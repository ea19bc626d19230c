"""Charts without pyplot, for the reports."""

from __future__ import annotations

from matplotlib.figure import Figure


def figure(width: float, height: float, **subplots):
    """A matplotlib Figure and its axes, without pyplot: no global figure registry and no backend to choose
    (savefig renders with Agg), so no display is needed on servers and workers."""
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(**subplots)
