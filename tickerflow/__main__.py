"""`python -m tickerflow` is the `tickerflow` command."""

from tickerflow.cli import entry

entry()
