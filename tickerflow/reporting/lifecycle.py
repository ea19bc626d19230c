"""The end of a flow run's MLflow runs, as Prefect state hooks: a failed flow run ends them FAILED with the
reason; a crashed or cancelled one ends them KILLED (and a run stopped by a signal is marked Cancelled)."""

from __future__ import annotations

from typing import Any

from tickerflow.tracking.runs import end_flow_runs, end_stopped_flow_run


def end_runs_failed(flow: Any, flow_run: Any, state: Any) -> None:
    """on_failure: the flow run's MLflow runs end FAILED, with the state's message as the reason."""
    end_flow_runs(str(flow_run.id), "FAILED", state.message or "")


def end_runs_stopped(flow: Any, flow_run: Any, state: Any) -> None:
    """on_crashed and on_cancellation: the flow run's MLflow runs end KILLED, saying which."""
    end_stopped_flow_run(flow_run.id, state)
