"""`python -m tickerflow` is the `tickerflow` command."""

from tickerflow.flows.cli import main

raise SystemExit(main())
