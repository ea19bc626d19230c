"""Credentials in URIs never reach a store, a log or the console: the core's redaction
(`tickerflow_model.redaction`), which the stages and flows import from here. The price reader in the core
names files by their redacted URI and reveals a held one itself, so the redaction lives there.
"""

from __future__ import annotations

from tickerflow_model.redaction import MASK, has_credentials, hold, redact_text, redact_uri, reveal

__all__ = ["MASK", "has_credentials", "hold", "redact_text", "redact_uri", "reveal"]
