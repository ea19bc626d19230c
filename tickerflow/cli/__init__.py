"""The `tickerflow` command: one Typer app (`root.app`) and its boundary with the process
(`command_line.main`, `command_line.entry`, the console script). Importing it imports neither Prefect,
MLflow, torch nor pandas."""

from tickerflow.cli.command_line import entry, main
from tickerflow.cli.root import app

__all__ = ["app", "entry", "main"]
