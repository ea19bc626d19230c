"""The one place that reports: stage results -> MLflow params, metrics, artifacts and Prefect artifacts.

Stages (`tickerflow.tasks`) compute and return values; they never see an MLflow run. The flow hands each
result to a function here, together with the run id it started.
"""

from __future__ import annotations


# --- data and training: validation, windows, training ------------------------------------------------


# --- evaluation, backtest and registration -------------------------------------------------------------
