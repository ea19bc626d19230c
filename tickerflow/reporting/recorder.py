"""The MLflow run of one training flow run, held once: the flow hands each stage's result to the recorder,
and the recorder hands it on to its reporting task with the run, so the flow body does not repeat the run
on every line. Each method is one reporting task; the tasks stay callable on their own (tests, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tickerflow.reporting.evaluation import log_backtest, log_evaluation, log_registration
from tickerflow.reporting.run_labels import tag_model
from tickerflow.reporting.summaries import TrainingSummary
from tickerflow.reporting.training import (
    epoch_reporter,
    finish_training_run,
    log_dataset_lineage,
    log_training,
    log_validation,
    start_training_run,
)
from tickerflow.tasks.register import Registration
from tickerflow.tasks.validate import ValidationReport
from tickerflow.tracking.runs import TrackedRun
from tickerflow_model.backtest import Backtest
from tickerflow_model.config import EvaluateConfig, PipelineConfig, RegisterConfig
from tickerflow_model.evaluation import Evaluation
from tickerflow_model.fitting import FitResult
from tickerflow_model.trainer import EpochStats
from tickerflow_model.window_dataset import WindowDataset


@dataclass(frozen=True)
class RunRecorder:
    """Records a training run's results into its MLflow run."""

    run: TrackedRun

    @classmethod
    def start(cls, config: PipelineConfig) -> RunRecorder:
        return cls(start_training_run(config))

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def validation(self, report: ValidationReport) -> None:
        log_validation(report, self.run)

    def dataset(self, dataset: WindowDataset) -> None:
        log_dataset_lineage(dataset, self.run)

    def model(self, name: str) -> None:
        """The registered model the run competes in, as tags the UIs filter on."""
        tag_model(name, self.run)

    def epochs(self) -> Callable[[EpochStats], None]:
        """The train stage's `on_epoch`: each epoch's metrics into the run as it ends."""
        return epoch_reporter(self.run)

    def training(self, fit: FitResult) -> None:
        log_training(fit, self.run)

    def evaluation(self, evaluation: Evaluation, model_name: str, config: EvaluateConfig) -> None:
        log_evaluation(evaluation, model_name, config, self.run)

    def backtest(self, folds: Backtest | None) -> None:
        log_backtest(folds, self.run)

    def registration(self, registration: Registration, evaluation: Evaluation, config: RegisterConfig) -> None:
        log_registration(registration, evaluation, config, self.run)

    def finish(self, evaluation: Evaluation, registration: Registration, folds: Backtest | None) -> TrainingSummary:
        return finish_training_run(self.run, evaluation, registration, folds)
