"""The training run's records: each epoch reaches MLflow as it ends, the fit's figures after it."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from tiny_models import TINY, fake_dataset

from tickerflow.tracking.runs import TrackedRun


def test_every_epoch_reaches_mlflow_with_its_step_and_the_fit_after_it(monkeypatch, mlflow_store):
    from tickerflow.reporting import epoch_reporter, log_training
    from tickerflow.tracking.store import experiment_id, use_tracking
    from tickerflow_model.fitting import fit_forecaster

    client = use_tracking()
    run_id = client.create_run(experiment_id(client)).info.run_id
    seen_during_training = []
    report = epoch_reporter(TrackedRun(run_id))

    def on_epoch(s):
        report(s)  # live: the epoch is in MLflow before the next one starts
        seen_during_training.append(len(client.get_metric_history(run_id, "val_loss")))

    result = fit_forecaster(fake_dataset(monkeypatch), TINY, on_epoch=on_epoch)
    log_training.fn(result, TrackedRun(run_id))

    assert seen_during_training == [1, 2, 3, 4]
    client = mlflow.MlflowClient(mlflow_store)
    for name in ("train_loss", "val_loss", "lr", "epoch_seconds", "samples_per_second"):
        history = client.get_metric_history(run_id, name)
        assert [m.step for m in history] == [1, 2, 3, 4], name
        assert all(np.isfinite(m.value) for m in history)
    run = client.get_run(run_id)
    assert run.data.metrics["best_epoch"] == result.best_epoch >= 1
    assert run.data.metrics["best_val_loss"] == pytest.approx(result.best_val_loss)
    assert run.data.metrics["shrinkage_h1"] == pytest.approx(result.shrinkage[0])
    # the margins of the central intervals, widest first: 98%, 95%, 90%, 80%, 50%
    assert run.data.metrics["cqr_margin_98_h1"] == pytest.approx(result.margins[0][0])
    assert run.data.metrics["cqr_margin_90_h1"] == pytest.approx(result.margins[0][2])
    assert {"cqr_margin_95_h1", "cqr_margin_80_h1", "cqr_margin_50_h1"} <= set(run.data.metrics)
    assert run.data.tags["train.device"] == "cpu" and run.data.tags["train.precision"] == result.precision
    assert len(result.forecaster.spec.shrinkage) == 1
