"""Credentials in URIs never reach a store, a log or the console.

A data URI such as `https://user:pass@host/prices.csv?X-Amz-Signature=...` or an `MLFLOW_TRACKING_URI`
with a password is recorded and printed in its redacted form, which keeps the scheme, host and path:
`https://***@host/prices.csv?X-Amz-Signature=***`.

The command line keeps the full URI in this process's memory only (`hold`) and passes the redacted
form on as the flow's parameter, so Prefect's flow-run parameters and MLflow's params never see the
secret; the price reader (`price_files.read_prices`) asks for the full URI back (`reveal`) when it opens
the file. A deployment's parameters cannot carry credentials this way: give them to fsspec through the
environment instead.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()\[\]{}|\\^`]+")
_held: dict[str, str] = {}


def redact_uri(uri: str) -> str:
    """`scheme://user:pass@host/path?k=v` -> `scheme://***@host/path?k=***`; other strings unchanged."""
    text = str(uri)
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # an unparsable netloc: keep only the scheme
        return f"{text.split('://', 1)[0]}://{MASK}"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{host}" + (f":{port}" if port else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK) for k, _ in pairs], safe="*") if pairs else MASK
    return urlunsplit((parts.scheme, netloc, parts.path, query, MASK if parts.fragment else ""))


def redact_text(text: str) -> str:
    """Every URI inside `text` redacted (error messages of HTTP and object-store clients quote them)."""
    return _URI.sub(lambda m: redact_uri(m.group(0)), str(text))


def hold(uri: str) -> str:
    """Keep `uri` in this process's memory and return its redacted form, to pass around instead."""
    redacted = redact_uri(uri)
    if redacted != uri:
        _held[redacted] = uri
    return redacted


def reveal(uri: str) -> str:
    """The full URI behind a redacted one held by this process; anything else unchanged."""
    return _held.get(uri, uri)
