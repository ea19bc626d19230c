"""`python -m tickerflow` is the `tickerflow` command."""

from tickerflow.flows.cli import entry

entry()
