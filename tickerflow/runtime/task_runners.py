"""Which task runner the per-ticker fan-out uses: a thread pool here, or a Dask cluster.

Only tasks started with `.submit` / `.map` go through the task runner; the stages the flow calls
directly run in the flow's own process either way. Building a runner connects to nothing: a
`DaskTaskRunner` opens its client (or its temporary cluster) when the flow run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from tickerflow_model.config import Config

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

RunnerKind = Literal["thread", "dask"]
# A free port on loopback for the temporary local cluster's dashboard.
LOCAL_DASHBOARD = "127.0.0.1:0"
LOCAL_WORKERS = 2  # processes of the temporary local cluster when n_workers is not given


class RunnerConfig(Config):
    """`kind="thread"`: a pool of `max_workers` threads (None: Prefect's default).

    `kind="dask"`: the Dask scheduler at `address` (e.g. `tcp://10.0.0.5:8786`), or, with no address,
    a temporary local cluster of `n_workers` processes that lives as long as the flow run.
    """

    kind: RunnerKind = Field("thread", description="thread pool or Dask cluster")
    address: str | None = Field(None, description="Dask scheduler, tcp://HOST:PORT")
    n_workers: int | None = Field(None, ge=1, description="processes of a temporary local Dask cluster")
    max_workers: int | None = Field(None, ge=1, description="threads of the thread pool (None: Prefect's default)")

    @field_validator("address")
    @classmethod
    def _looks_like_a_uri(cls, address: str | None) -> str | None:
        if address is not None and "://" not in address:
            raise ValueError(f"dask scheduler address must look like tcp://HOST:PORT, got {address!r}")
        return address

    @model_validator(mode="after")
    def _options_fit_the_kind(self) -> "RunnerConfig":
        if self.address is not None and self.kind != "dask":
            raise ValueError(f"address ({self.address!r}) only applies to the dask runner, not {self.kind!r}")
        if self.n_workers is not None and (self.kind != "dask" or self.address is not None):
            raise ValueError(
                "n_workers sizes the temporary local Dask cluster; it needs --runner dask without an address"
            )
        return self


def build_task_runner(config: RunnerConfig) -> TaskRunner[Any]:  # its futures' type depends on the kind
    if config.kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

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
