"""tickerflow's own lines in a run's log, marked as its own, so a console can tell them from Prefect's.

    log = run_logger()                  # Prefect's run logger: the line goes to the run's log and the UI
    log.info("ingested %d rows", n)     # tickerflow's line: on the quiet console too
    log.info("%s", line, extra=DETAIL)  # a detail line (each epoch, each data finding): the run's log and
                                        # `--verbose` only; a terminal has the progress bar, the quiet console
                                        # the stage's summary line

The marks are record attributes, not wording: the quiet console (`tickerflow.cli.console`) shows a record of
Prefect's run loggers only when it carries OWN. Light: the console imports it before anything heavy.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

OWN_ATTRIBUTE = "tickerflow_line"
DETAIL_ATTRIBUTE = "tickerflow_detail"
DETAIL = {DETAIL_ATTRIBUTE: True}


class OwnLines(logging.LoggerAdapter):
    """A logger (adapter) whose every record carries OWN_ATTRIBUTE, beside any `extra` of the call."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), OWN_ATTRIBUTE: True}
        return msg, kwargs


def run_logger() -> OwnLines:
    """Prefect's logger of the current task or flow run, tickerflow's lines marked as its own."""
    from prefect.logging import get_run_logger  # (Prefect: only inside a run; the console imports this module)

    return OwnLines(get_run_logger(), {})


def is_own(record: logging.LogRecord) -> bool:
    return bool(getattr(record, OWN_ATTRIBUTE, False))


def is_detail(record: logging.LogRecord) -> bool:
    return bool(getattr(record, DETAIL_ATTRIBUTE, False))
