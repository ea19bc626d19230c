"""The training pipeline: ingest -> validate -> window -> train -> evaluate -> register.

One Prefect flow run is one MLflow run: the config goes in as params, the flow-run id as a tag.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import mlflow
import pandas as pd
from prefect import flow, runtime, task
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import opaque as prefect_opaque

from tickerflow.reporting.recorder import RunRecorder
from tickerflow.reporting.run_labels import cross_link, tag_train_run, train_run_name
from tickerflow.tasks.evaluate import backtest, evaluate, load_champion
from tickerflow.tasks.ingest import ingest
from tickerflow.tasks.register import Registration, register
from tickerflow.tasks.tracking import (
    PREFECT_FLOW_RUN_TAG,
    end_flow_runs,
    end_run,
    end_stopped_flow_run,
    experiment_id,
    process_tags,
    reap_stale_runs,
    run_url,
    use_tracking,
)
from tickerflow.tasks.train import train
from tickerflow.tasks.validate import require_valid, validate
from tickerflow.tasks.window import window
from tickerflow_model.backtest import Backtest
from tickerflow_model.config import PipelineConfig
from tickerflow_model.evaluation import Evaluation
from tickerflow_model.redaction import redact_text, redact_uri

T = TypeVar("T")


def opaque(value: T) -> T:
    """Prefect's `opaque(value)`, typed as the value a task receives for it: Prefect unwraps it before the
    task runs, but its task signatures know nothing of its annotations, so a checker would see a wrapper
    where the task wants the value."""
    return cast(T, prefect_opaque(value))


@task(name="start-mlflow-run")
def start_mlflow_run(config: PipelineConfig) -> str:
    client = use_tracking()
    reap_stale_runs(client)
    flow_run_id = str(runtime.flow_run.id or "")
    run = client.create_run(
        experiment_id(client),
        run_name=runtime.flow_run.name,
        tags={
            PREFECT_FLOW_RUN_TAG: flow_run_id,
            "prefect.flow_name": "train_pipeline",
            "data.source": redact_uri(config.ingest.source),
            **process_tags(),
        },
    )
    # A deployment's parameters may still carry credentials in a URI: never into MLflow.
    params = [mlflow.entities.Param(k, redact_text(v)[:6000]) for k, v in config.flat_params().items()]
    client.log_batch(run.info.run_id, params=params)
    cross_link(run.info.run_id)
    return run.info.run_id


@task(name="finish-mlflow-run")
def finish_mlflow_run(
    run_id: str, evaluation: Evaluation, registration: Registration, folds: Backtest | None = None
) -> dict[str, Any]:
    end_run(run_id, failed=False)
    return {
        "mlflow_run_id": run_id,
        "mlflow_run_url": run_url(run_id),
        "model_name": registration.model_name,
        "model_version": registration.version,
        "model_uri": registration.model_uri,
        "promoted": registration.promoted,
        "reason": registration.reason,
        "skill_vs_naive": evaluation.skill,
        "test_forecasts": evaluation.n_windows,
        "metrics": evaluation.metrics,
        "per_ticker": evaluation.per_ticker,
        "per_horizon": evaluation.per_horizon,
        "versus": evaluation.versus_rivals(),
        "champion_version": registration.champion_version,
        "champion_forecaster": registration.champion_forecaster,
        "compared_champion_version": evaluation.champion_version,
        "champion_not_compared": evaluation.champion_error,
        "backtest": None if folds is None else {"metrics": folds.metrics, "folds": folds.fold_rows()},
    }


def _fail_mlflow_run(flow, flow_run, state) -> None:
    """On a failed flow run, mark its MLflow run FAILED (found by the flow-run id tag)."""
    end_flow_runs(str(flow_run.id), "FAILED", state.message or "")


def _kill_mlflow_run(flow, flow_run, state) -> None:
    """On a crashed or cancelled flow run, mark its MLflow run KILLED, saying which; a run stopped by a
    signal is marked Cancelled (`tracking.end_stopped_flow_run`)."""
    end_stopped_flow_run(flow_run.id, state)


@flow(
    name="train_pipeline",
    flow_run_name=train_run_name,
    # Prefect types the parameter TaskRunner[PrefectFuture], which no runner is (PrefectHQ/prefect#16938)
    task_runner=ThreadPoolTaskRunner(),  # type: ignore[arg-type]
    on_running=[tag_train_run],
    on_failure=[_fail_mlflow_run],
    on_crashed=[_kill_mlflow_run],
    on_cancellation=[_kill_mlflow_run],
    log_prints=True,
)
def train_pipeline(config: PipelineConfig = PipelineConfig()) -> dict[str, Any]:
    # opaque(...): Prefect passes the value but does not walk into it looking for futures and upstream
    # runs. A window manifest or an evaluation of 400 tickers holds hundreds of thousands of nested
    # values, which cost about half a second per task that takes one.
    run = RunRecorder(start_mlflow_run(config))
    raw = ingest(config.ingest)
    report = validate(raw.frame, config.validate_, config.window.min_rows, raw.source_hash)
    run.validation(opaque(report))
    prices: pd.DataFrame = require_valid(opaque(report))
    dataset = window(prices, config.window, raw.source_hash)
    run.dataset(opaque(dataset))
    fit = train(opaque(dataset), config.train, on_epoch=run.epochs())
    run.training(opaque(fit))
    model = fit.forecaster
    champion = load_champion(config.register_.model_name)
    evaluation = evaluate(opaque(model), opaque(dataset), prices, opaque(champion), config.train.cpu_threads)
    run.evaluation(opaque(evaluation), config.register_.model_name, config.evaluate)
    folds = backtest(prices, config.window, config.train, config.backtest, raw.source_hash)
    run.backtest(opaque(folds))
    # the one stage that sees the run: it logs the model into it to register a version
    registration = register(opaque(model), opaque(evaluation), opaque(dataset), prices, config.register_, run.run_id)
    run.registration(opaque(registration), opaque(evaluation), config.register_)
    return finish_mlflow_run(run.run_id, opaque(evaluation), opaque(registration), opaque(folds))
