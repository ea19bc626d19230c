"""Rows that two machines' runs insert at the same moment: MLflow checks, then inserts, without a lock, so the
second insert of one dataset fails on PostgreSQL with `UniqueViolation` (seen with two runs on the same data
against a PostgreSQL-backed tracking server). The run writes again and MLflow links the other run's row."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

import tickerflow.tracking.runs as runs
from tickerflow.tracking.runs import TrackedRun
from tickerflow.tracking.store import is_concurrent_insert

DATASET_RACE = (
    "BAD_REQUEST: (psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint "
    '"dataset_pk"\nDETAIL:  Key (experiment_id, name, digest)=(1, windows-339d32dfb954d877, 339d32df) already exists.'
)


class Store:
    """A tracking client whose first `failures` inserts of a dataset collide with another writer's."""

    def __init__(self, failures: int, error: str = DATASET_RACE) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def log_inputs(self, run_id, datasets):
        self.calls += 1
        if self.calls <= self.failures:
            raise MlflowException(self.error)


def test_the_store_says_which_table_a_concurrent_insert_hit():
    assert is_concurrent_insert(MlflowException(DATASET_RACE), "dataset")
    assert not is_concurrent_insert(MlflowException(DATASET_RACE), "registered_model_alias")
    assert is_concurrent_insert(MlflowException("UNIQUE constraint failed: datasets.experiment_id"), "dataset")
    assert not is_concurrent_insert(MlflowException("RESOURCE_DOES_NOT_EXIST: run x"), "dataset")
    assert not is_concurrent_insert(ValueError(DATASET_RACE), "dataset")  # only what MLflow raised


@pytest.mark.parametrize("failures", [0, 1, runs.INSERT_ATTEMPTS - 1])
def test_a_dataset_another_run_inserted_at_the_same_moment_is_written_again(monkeypatch, failures):
    store = Store(failures)
    monkeypatch.setattr(runs, "use_tracking", lambda: store)
    monkeypatch.setattr(runs.time, "sleep", lambda s: None)
    TrackedRun("r1").log_training_input("windows-339d", "339d32df", "file:///tmp/windows")
    assert store.calls == failures + 1


def test_the_writes_are_bounded_and_any_other_error_is_not_retried(monkeypatch):
    monkeypatch.setattr(runs.time, "sleep", lambda s: None)
    endless = Store(failures=99)
    monkeypatch.setattr(runs, "use_tracking", lambda: endless)
    with pytest.raises(MlflowException, match="dataset_pk"):
        TrackedRun("r1").log_training_input("windows-339d", "339d32df", "file:///tmp/windows")
    assert endless.calls == runs.INSERT_ATTEMPTS

    other = Store(failures=1, error="INTERNAL_ERROR: disk full")
    monkeypatch.setattr(runs, "use_tracking", lambda: other)
    with pytest.raises(MlflowException, match="disk full"):
        TrackedRun("r1").log_training_input("windows-339d", "339d32df", "file:///tmp/windows")
    assert other.calls == 1
