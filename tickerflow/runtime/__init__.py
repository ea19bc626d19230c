"""What a tickerflow process runs on: its environment defaults, the servers it starts and stops (Prefect's
temporary API, `prefect server`, `mlflow server`), the deployments it serves and the task runner of its
flows. Nothing here imports Prefect or MLflow at import time."""
