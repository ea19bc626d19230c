"""tickerflow: Prefect flows that train, check and ship GRU forecasters, tracked in MLflow.

Installed, the project is one namespace: `tickerflow.flows` (the flows), `tickerflow.tasks` (the Prefect
stages), `tickerflow.reporting` (results -> MLflow and Prefect records), `tickerflow.tracking.registry` (the
champion protocol), `tickerflow.cli` (the command), `tickerflow.runtime` (environment, servers, task
runners) and, beside it, `tickerflow_model` (the numeric core that travels with each model).
"""
