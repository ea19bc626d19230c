"""Which task runner the per-ticker fan-out uses: a thread pool here, or a Dask cluster.

Only tasks started with `.submit` / `.map` go through the task runner; the stages the flow calls
directly run in the flow's own process either way. Building a runner connects to nothing: a
`DaskTaskRunner` opens its client (or its temporary cluster) when the flow run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tickerflow_model.config import LOCAL_WORKERS, RunnerConfig

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

# A free port on loopback for the temporary local cluster's dashboard.
LOCAL_DASHBOARD = "127.0.0.1:0"


def build_task_runner(config: RunnerConfig) -> TaskRunner[Any]:  # its futures' type depends on the kind
    if config.kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner  # (Prefect: once a flow runs)

        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    from prefect_dask import DaskTaskRunner  # imports dask.distributed: only when asked for

    if config.address:
        return DaskTaskRunner(address=config.address)
    # Loopback only: LocalCluster's dashboard would otherwise listen on 0.0.0.0:8787, unauthenticated.
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": config.n_workers or LOCAL_WORKERS,
            "processes": True,
            "dashboard_address": LOCAL_DASHBOARD,
        }
    )
