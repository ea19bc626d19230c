"""When a task's retries are worth it: a transient failure may pass, bad input or a broken model never will."""

from __future__ import annotations

from typing import Callable


def retry_unless(*permanent: type[BaseException]) -> Callable:
    """A Prefect `retry_condition_fn` that retries every failure except the `permanent` error types."""

    def condition(task, task_run, state) -> bool:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - an unreadable result is no reason to give up on a retry
            return True
        return not isinstance(exc, permanent)

    return condition
