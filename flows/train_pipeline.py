"""The training pipeline: ingest -> validate -> window -> train -> evaluate -> register.

One Prefect flow run is one MLflow run: the config goes in as params, the flow-run id as a tag.

The stages take their inputs as they are, large ones too: Prefect walks a task's inputs for futures and
to resolve them, about 1 s per task that takes a 400-ticker evaluation on a busy 2-core machine (2.5 s at
1,000 tickers), about 2% of a one-epoch run of that size (docs/BENCHMARKS.md, "What Prefect's input walk
costs").
"""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from tickerflow.reporting.lifecycle import end_runs_failed, end_runs_stopped
from tickerflow.reporting.recorder import RunRecorder
from tickerflow.reporting.run_labels import tag_train_run, train_run_name
from tickerflow.reporting.summaries import TrainingSummary
from tickerflow.tasks.evaluate import backtest, evaluate, load_champion
from tickerflow.tasks.ingest import ingest
from tickerflow.tasks.register import choose_model, register
from tickerflow.tasks.train import train
from tickerflow.tasks.validate import require_valid, validate
from tickerflow.tasks.window import window
from tickerflow_model.config import PipelineConfig


@flow(
    name="train_pipeline",
    flow_run_name=train_run_name,
    # Prefect types the parameter TaskRunner[PrefectFuture], which no runner is (PrefectHQ/prefect#16938)
    task_runner=ThreadPoolTaskRunner(),  # type: ignore[arg-type]
    on_running=[tag_train_run],
    on_failure=[end_runs_failed],
    on_crashed=[end_runs_stopped],
    on_cancellation=[end_runs_stopped],
    log_prints=True,
)
def train_pipeline(config: PipelineConfig = PipelineConfig()) -> TrainingSummary:
    run = RunRecorder.start(config)
    raw = ingest(config.ingest)
    report = validate(raw.frame, config.validate_, config.window.min_rows, raw.source_hash)
    run.validation(report)
    prices = require_valid(report)
    dataset = window(prices, config.window, raw.source_hash)
    run.dataset(dataset)
    model = choose_model(dataset, config.register_, config.ingest.source)
    run.model(model)
    fit = train(dataset, config.train, on_epoch=run.epochs())
    run.training(fit)
    champion = load_champion(model)
    evaluation = evaluate(fit.forecaster, dataset, prices, champion, config.train.cpu_threads)
    run.evaluation(evaluation, model, config.evaluate)
    folds = backtest(prices, config.window, config.train, config.backtest, raw.source_hash)
    run.backtest(folds)
    # the one stage that sees the run: it logs the model into it to register a version
    registration = register(fit.forecaster, evaluation, dataset, prices, config.register_, run.run_id, model)
    run.registration(registration, evaluation, config.register_)
    return run.finish(evaluation, registration, folds)
