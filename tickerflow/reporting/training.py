"""A training run's MLflow run from start to finish: its params, the validation summary (and Data Docs), the
window dataset's lineage, per-epoch metrics and the fit's outcome, then the run's note and its summary."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from prefect import runtime, task
from prefect.artifacts import create_markdown_artifact

from tickerflow.reporting.run_labels import cross_link
from tickerflow.reporting.run_note import headline_metrics, run_note
from tickerflow.reporting.summaries import TrainingSummary
from tickerflow.tasks.register import Registration
from tickerflow.tasks.validate import ValidationReport
from tickerflow.tracking.runs import TrackedRun, find_runs, reap_stale_runs
from tickerflow.tracking.store import EXPERIMENT, PREFECT_FLOW_RUN_TAG
from tickerflow_model.backtest import Backtest
from tickerflow_model.config import PipelineConfig
from tickerflow_model.evaluation import Evaluation
from tickerflow_model.fitting import FitResult
from tickerflow_model.quantiles import central_pairs
from tickerflow_model.redaction import redact_uri
from tickerflow_model.trainer import EpochStats
from tickerflow_model.window_dataset import WindowDataset


@task(name="start-mlflow-run")
def start_training_run(config: PipelineConfig) -> TrackedRun:
    """The flow run's MLflow run: every section of the config as params (credentials redacted), the flow-run id
    as a tag, a link each way. Runs whose process died first are ended KILLED."""
    reap_stale_runs()
    run = TrackedRun.start(
        EXPERIMENT,
        name=runtime.flow_run.name,
        tags={
            PREFECT_FLOW_RUN_TAG: str(runtime.flow_run.id or ""),
            "prefect.flow_name": "train_pipeline",
            "data.source": redact_uri(config.ingest.source),
        },
    )
    run.log_params(config.flat_params())
    cross_link(run)
    return run


@task(name="finish-mlflow-run")
def finish_training_run(
    run: TrackedRun, evaluation: Evaluation, registration: Registration, folds: Backtest | None = None
) -> TrainingSummary:
    """The run's story on its MLflow page (the note, the `headline/` figures), then the run ends FINISHED."""
    run.set_description(run_note(evaluation, registration))
    run.log_metrics(headline_metrics(evaluation, registration))
    run.finish()
    return TrainingSummary(
        mlflow_run_id=run.run_id,
        mlflow_run_url=run.url,
        model_name=registration.model_name,
        model_version=registration.version,
        model_uri=registration.model_uri,
        promoted=registration.promoted,
        reason=registration.reason,
        skill_vs_naive=evaluation.skill,
        test_forecasts=evaluation.n_windows,
        metrics=evaluation.metrics,
        per_ticker=evaluation.per_ticker,
        per_horizon=evaluation.per_horizon,
        versus=tuple(evaluation.versus_rivals()),
        champion_version=registration.champion_version,
        champion_forecaster=registration.champion_forecaster,
        compared_champion_version=evaluation.champion_version,
        champion_not_compared=evaluation.champion_error,
        backtest=None if folds is None else {"metrics": folds.metrics, "folds": folds.fold_rows()},
    )


@task(name="log-validation")
def log_validation(report: ValidationReport, run: TrackedRun | None = None) -> None:
    """The `validation-summary` artifact, on every run (a cached validation included), passed or not.

    With a run id, Data Docs go to MLflow too, once per validation id: a later run of the same
    validation links to the run that holds them (tag `validation.data_docs_run`) instead of copying
    them again. The daily flow has no run of its own to give: it gets the artifact only.
    """
    create_markdown_artifact(key="validation-summary", markdown=report.markdown(), description="GX validation")
    if run is None:
        return
    validation = Path(report.docs_dir).parent.name  # validation/<validation id>/data_docs
    holder = find_runs(EXPERIMENT, f"tags.`validation.data_docs_of` = '{validation}'", max_results=1)
    if holder:
        docs_run = holder[0].run_id
    else:
        run.log_folder(report.docs_dir, "validation/data_docs")
        run.set_tags({"validation.data_docs_of": validation})
        docs_run = run.run_id
    run.log_text(report.summary(), "validation/summary.txt")
    run.set_tags(
        {
            "validation.data_docs_run": docs_run,
            "validation_id": validation,
            "validation": "passed" if report.success else "failed",
        }
    )


@task(name="log-dataset-lineage")
def log_dataset_lineage(dataset: WindowDataset, run: TrackedRun) -> None:
    """Record the window dataset (id = digest, folder = source) as the run's training input."""
    run.log_training_input(f"windows-{dataset.dataset_id}", dataset.dataset_id, Path(dataset.path).as_uri())
    run.set_tags({"dataset_id": dataset.dataset_id, "source_hash": dataset.manifest["source_hash"]})


def epoch_metrics(s: EpochStats) -> dict[str, float]:
    return {
        "train_loss": s.train_loss,
        "val_loss": s.val_loss,
        "lr": s.lr,
        "epoch_seconds": s.epoch_seconds,
        "samples_per_second": s.samples_per_second,
    }


def epoch_reporter(run: TrackedRun) -> Callable[[EpochStats], None]:
    """The train stage's `on_epoch`: each epoch's metrics into the MLflow run as it ends, step = epoch,
    so the MLflow UI draws the curves while training runs."""

    def report(s: EpochStats) -> None:
        run.log_metrics(epoch_metrics(s), step=s.epoch)

    return report


def fit_metrics(result: FitResult) -> dict[str, float]:
    """What the fit found: best epoch and loss, the shrinkage and the conformal margins per horizon step."""
    out = {"best_val_loss": float(result.best_val_loss), "best_epoch": float(result.best_epoch)}
    pairs = central_pairs(result.forecaster.spec.quantiles)
    for k, a in enumerate(result.shrinkage, start=1):
        out[f"shrinkage_h{k}"] = float(a)
        for (_, _, cov), m in zip(pairs, result.margins[k - 1] if result.margins else ()):
            out[f"cqr_margin_{round(cov * 100)}_h{k}"] = float(m)
    return out


@task(name="log-training")
def log_training(result: FitResult, run: TrackedRun) -> None:
    """The fit's figures (`fit_metrics`) and where it ran (tags train.device, train.precision)."""
    run.log_metrics(fit_metrics(result))
    run.set_tags({"train.device": result.device, "train.precision": result.precision})
