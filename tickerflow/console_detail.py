"""Log lines kept off the quiet console: the per-epoch lines of training (a terminal has the progress bar
for them) and each data finding of validation (its summary line counts them) stay in the Prefect run's
log and the UI, and show on the console with `--verbose`.

    log.info("%s", line, extra=DETAIL)

Standard library only, so every layer above the core may import it.
"""

from __future__ import annotations

import logging

DETAIL_ATTRIBUTE = "tickerflow_detail"
DETAIL = {DETAIL_ATTRIBUTE: True}


def is_detail(record: logging.LogRecord) -> bool:
    return bool(getattr(record, DETAIL_ATTRIBUTE, False))
