"""The failures a user can act on: bad data, bad config, a missing model, a store that refuses.

Every expected failure derives from `TickerflowError`. The command line prints these as one readable
line and no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os


class TickerflowError(Exception):
    """An expected failure whose message says what is wrong and what to do about it."""


class ConfigError(TickerflowError, ValueError):
    """A configuration value or a command-line option is out of bounds; the message names it."""


class ModelNotFound(TickerflowError, LookupError):
    """The registry has no model behind the URI asked for, or it cannot be loaded."""


# errno values that say the storage refused a write (disk full, quota, read-only, no permission, a file
# where a folder should be): the user can act on them, a retry cannot.
STORAGE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EISDIR", "EEXIST", "EFBIG")
    if hasattr(errno, name)
)


def storage_failure(exc: BaseException | None) -> OSError | None:
    """The OSError naming a path that the storage refused, in `exc` or its chain; None if there is none."""
    seen: list[BaseException] = []
    while exc is not None and not any(exc is s for s in seen):
        seen.append(exc)
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS and exc.filename:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def storage_message(error: OSError) -> str:
    """One line naming the path: `No space left on device: /home/raw/...`."""
    return f"{error.strerror or os.strerror(error.errno or 0)}: {error.filename}"


class ModelInputError(TickerflowError, ValueError):
    """The data given to a model lacks what the model reads (a column it was trained on)."""


CAUSE_CHARS = 200


def cause_line(exc: BaseException) -> str:
    """One line naming why `exc` was raised. MLflow's schema errors paste the head of the data frame before
    their cause (`Failed to enforce schema of data '<frame>' ... Error: <cause>`): the cause is kept, never
    the frame."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    cause = message.rsplit("Error: ", 1)[-1] if "Error: " in message else message
    line = " ".join(cause.strip().splitlines()[:1]) or type(exc).__name__
    return line if len(line) <= CAUSE_CHARS else line[: CAUSE_CHARS - 3] + "..."
