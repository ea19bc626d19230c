"""Data and training records of a training run: the validation summary (and Data Docs), the window
dataset's lineage, per-epoch metrics and the fit's outcome, all into the run the flow started."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from prefect import task
from prefect.artifacts import create_markdown_artifact

from tickerflow.tasks.tracking import experiment_id, use_tracking
from tickerflow.tasks.validate import ValidationReport
from tickerflow_model.fitting import FitResult
from tickerflow_model.quantiles import central_pairs
from tickerflow_model.trainer import EpochStats
from tickerflow_model.window_dataset import WindowDataset


@task(name="log-validation")
def log_validation(report: ValidationReport, run_id: str | None = None) -> None:
    """The `validation-summary` artifact, on every run (a cached validation included), passed or not.

    With a run id, Data Docs go to MLflow too, once per validation id: a later run of the same
    validation links to the run that holds them (tag `validation.data_docs_run`) instead of copying
    them again. The daily flow has no run of its own to give: it gets the artifact only.
    """
    create_markdown_artifact(key="validation-summary", markdown=report.markdown(), description="GX validation")
    if run_id is None:
        return
    client = use_tracking()
    validation = Path(report.docs_dir).parent.name  # validation/<validation id>/data_docs
    holder = client.search_runs(
        [experiment_id(client)], filter_string=f"tags.`validation.data_docs_of` = '{validation}'", max_results=1
    )
    if holder:
        docs_run = holder[0].info.run_id
    else:
        client.log_artifacts(run_id, report.docs_dir, "validation/data_docs")
        client.set_tag(run_id, "validation.data_docs_of", validation)
        docs_run = run_id
    client.set_tag(run_id, "validation.data_docs_run", docs_run)
    client.set_tag(run_id, "validation_id", validation)
    client.log_text(run_id, report.summary(), "validation/summary.txt")
    client.set_tag(run_id, "validation", "passed" if report.success else "failed")


@task(name="log-dataset-lineage")
def log_dataset_lineage(dataset: WindowDataset, run_id: str) -> None:
    """Record the window dataset (id = digest, folder = source) as the run's training input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "can be interpreted in multiple ways": both are local files
        source = resolve_dataset_source(Path(dataset.path).as_uri())
    # MetaDataset leaves Dataset.profile abstract, but Dataset is no ABC: MLflow instantiates it the same way
    meta = MetaDataset(source, name=f"windows-{dataset.dataset_id}", digest=dataset.dataset_id)  # type: ignore[abstract]
    entity = meta._to_mlflow_entity()
    client = use_tracking()
    client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])])
    client.set_tag(run_id, "dataset_id", dataset.dataset_id)
    client.set_tag(run_id, "source_hash", dataset.manifest["source_hash"])


def epoch_metrics(s: EpochStats) -> dict[str, float]:
    return {
        "train_loss": s.train_loss,
        "val_loss": s.val_loss,
        "lr": s.lr,
        "epoch_seconds": s.epoch_seconds,
        "samples_per_second": s.samples_per_second,
    }


def epoch_reporter(run_id: str) -> Callable[[EpochStats], None]:
    """The train stage's `on_epoch`: each epoch's metrics into the MLflow run as it ends, step = epoch,
    so the MLflow UI draws the curves while training runs."""
    client = use_tracking()

    def report(s: EpochStats) -> None:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id, metrics=[mlflow.entities.Metric(k, float(v), now, s.epoch) for k, v in epoch_metrics(s).items()]
        )

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
def log_training(result: FitResult, run_id: str) -> None:
    """The fit's figures (`fit_metrics`) and where it ran (tags train.device, train.precision)."""
    client = use_tracking()
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[mlflow.entities.Metric(k, v, now, 0) for k, v in fit_metrics(result).items()],
        tags=[
            mlflow.entities.RunTag("train.device", result.device),
            mlflow.entities.RunTag("train.precision", result.precision),
        ],
    )
