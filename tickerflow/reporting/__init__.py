"""The one place that reports: stage results -> MLflow params, metrics, artifacts and Prefect artifacts.

Stages (`tickerflow.tasks`) compute and return values; they never see an MLflow run. The training flow
hands each result to a task here, together with the run id it started (`training`, `evaluation`); the
daily flow's tasks (`daily`) open the runs of their own experiments. `run_labels` names and tags the flow
runs in the Prefect UI and links each to its MLflow run.
"""

from tickerflow.reporting.daily import log_live_metrics, publish_forecasts
from tickerflow.reporting.evaluation import log_backtest, log_evaluation, log_registration
from tickerflow.reporting.training import epoch_reporter, log_dataset_lineage, log_training, log_validation

__all__ = [
    "epoch_reporter",
    "log_backtest",
    "log_dataset_lineage",
    "log_evaluation",
    "log_live_metrics",
    "log_registration",
    "log_training",
    "log_validation",
    "publish_forecasts",
]
