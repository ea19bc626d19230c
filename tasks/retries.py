"""When a task's retries are worth it: a transient failure may pass, bad input or a broken model never will."""

from __future__ import annotations

from typing import Callable

from tickerflow_model.errors import storage_failure


def retry_unless(*permanent: type[BaseException]) -> Callable:
    """A Prefect `retry_condition_fn` that retries every failure except the `permanent` error types and a
    storage that refuses a write (disk full, read-only)."""

    def condition(task, task_run, state) -> bool:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - an unreadable result is no reason to give up on a retry
            return True
        return not isinstance(exc, permanent) and storage_failure(exc) is None  # a full disk stays full

    return condition
