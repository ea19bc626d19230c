"""Which task runner the per-ticker fan-out uses: a thread pool here, or a Dask cluster.

Only tasks started with `.submit` / `.map` go through the task runner; the stages the flow calls
directly run in the flow's own process either way. Building a runner connects to nothing: a
`DaskTaskRunner` opens its client (or its temporary cluster) when the flow run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tickerflow_model.errors import ConfigError

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

RUNNER_KINDS = ("thread", "dask")
# A free port on loopback for the temporary local cluster's dashboard.
LOCAL_DASHBOARD = "127.0.0.1:0"
LOCAL_WORKERS = 2  # processes of the temporary local cluster when n_workers is not given


@dataclass(frozen=True)
class RunnerConfig:
    """`kind="thread"`: a pool of `max_workers` threads (None: Prefect's default).

    `kind="dask"`: the Dask scheduler at `address` (e.g. `tcp://10.0.0.5:8786`), or, with no address,
    a temporary local cluster of `n_workers` processes that lives as long as the flow run.
    """

    kind: str = "thread"
    address: str | None = None
    n_workers: int | None = None
    max_workers: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in RUNNER_KINDS:
            raise ConfigError(f"task runner kind must be one of {', '.join(RUNNER_KINDS)}, got {self.kind!r}")
        if self.address is not None and self.kind != "dask":
            raise ConfigError(f"a scheduler address ({self.address!r}) only applies to the dask runner, not {self.kind!r}")
        if self.address is not None and "://" not in self.address:
            raise ConfigError(f"dask scheduler address must look like tcp://HOST:PORT, got {self.address!r}")
        for name in ("n_workers", "max_workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if self.n_workers is not None and (self.kind != "dask" or self.address is not None):
            raise ConfigError("n_workers sizes the temporary local Dask cluster; it needs --runner dask without an address")


def build_task_runner(config: RunnerConfig) -> TaskRunner:
    if config.kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    from prefect_dask import DaskTaskRunner  # imports dask.distributed: only when asked for

    if config.address:
        return DaskTaskRunner(address=config.address)
    # Loopback only: LocalCluster's dashboard would otherwise listen on 0.0.0.0:8787, unauthenticated.
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": config.n_workers or LOCAL_WORKERS, "processes": True, "dashboard_address": LOCAL_DASHBOARD}
    )
