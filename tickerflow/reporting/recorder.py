"""The MLflow run of one training flow run, held once: the flow hands each stage's result to the recorder,
and the recorder hands it on to its reporting task with the run id, so the flow body does not repeat the id
on every line. Each method is one reporting task; the tasks stay callable on their own (tests, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tickerflow.reporting.evaluation import log_backtest, log_evaluation, log_registration
from tickerflow.reporting.training import epoch_reporter, log_dataset_lineage, log_training, log_validation
from tickerflow.tasks.register import Registration
from tickerflow.tasks.validate import ValidationReport
from tickerflow_model.backtest import Backtest
from tickerflow_model.config import EvaluateConfig, RegisterConfig
from tickerflow_model.evaluation import Evaluation
from tickerflow_model.fitting import FitResult
from tickerflow_model.trainer import EpochStats
from tickerflow_model.window_dataset import WindowDataset


@dataclass(frozen=True)
class RunRecorder:
    """Records a training run's results into the MLflow run `run_id` (started by the flow)."""

    run_id: str

    def validation(self, report: ValidationReport) -> None:
        log_validation(report, self.run_id)

    def dataset(self, dataset: WindowDataset) -> None:
        log_dataset_lineage(dataset, self.run_id)

    def epochs(self) -> Callable[[EpochStats], None]:
        """The train stage's `on_epoch`: each epoch's metrics into the run as it ends."""
        return epoch_reporter(self.run_id)

    def training(self, fit: FitResult) -> None:
        log_training(fit, self.run_id)

    def evaluation(self, evaluation: Evaluation, model_name: str, config: EvaluateConfig) -> None:
        log_evaluation(evaluation, model_name, config, self.run_id)

    def backtest(self, folds: Backtest | None) -> None:
        log_backtest(folds, self.run_id)

    def registration(self, registration: Registration, evaluation: Evaluation, config: RegisterConfig) -> None:
        log_registration(registration, evaluation, config, self.run_id)
