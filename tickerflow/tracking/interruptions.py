"""Signals that stop a run (SIGTERM, SIGINT, SIGHUP), held back while a step must not be cut in two.

Registering a version takes several calls to the registry (the model, its tags, its aliases, the
champion history); a run stopped between two of them would leave a version without its alias or its
history entry. Inside `signals_held()` such a signal is noted instead, and delivered again, to the
handler that was there before, once the block has ended: the stop lands on a registry that is complete.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextmanager
def signals_held(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Hold `signals` for the block (main thread only: elsewhere Python delivers no signals anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for sig in signals:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # an ignored signal stays ignored
            previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(received):
            signal.raise_signal(sig)  # the stop that was held, now that the block is whole
