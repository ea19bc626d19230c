"""tickerflow: Prefect flows that train, check and ship GRU forecasters, tracked in MLflow.

Installed, the project is one namespace: `tickerflow.flows` (the flows and the CLI), `tickerflow.tasks`
(the Prefect stages) and, beside it, `tickerflow_model` (the numeric core that travels with each model).
"""
