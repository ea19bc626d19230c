"""The failures a user can act on: bad data, bad config, a missing model, a store that refuses.

Every expected failure derives from `TickerflowError`. The command line prints these as one readable
line and no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TickerflowError(Exception):
    """An expected failure whose message says what is wrong and what to do about it."""


class ConfigError(TickerflowError, ValueError):
    """A configuration value or a command-line option is out of bounds; the message names it."""


class ModelNotFound(TickerflowError, LookupError):
    """The registry has no model behind the URI asked for, or it cannot be loaded."""
