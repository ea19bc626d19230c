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


def redact_text(text: object) -> str:
    """Every URI inside `str(text)` redacted (error messages of HTTP and object-store clients quote them;
    an exception is given as itself, its message being what is shown)."""
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


# ---- exceptions ------------------------------------------------------------------------------------
class RedactedError(Exception):
    """Stands in, in an exception chain, for an exception whose message named a credential: it carries
    the original's type name and redacted message, and its traceback."""


def exception_chain(exc: BaseException | None) -> list[BaseException]:
    """`exc` and every exception chained to it (`__cause__`, `__context__`), each once."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__]
    return seen


def leaks(exc: BaseException | None) -> bool:
    """Whether `exc`, or any exception chained to it (`__cause__`, `__context__`), names a credential."""
    return any(redact_text(text) != text for e in exception_chain(exc) for text in (str(e), repr(e)))


def redacted_exception(exc: BaseException | None) -> BaseException | None:
    """`exc` itself when nothing in its chain names a credential; else a copy of the chain whose every
    exception is a `RedactedError` with the redacted message (types named, tracebacks kept), to chain
    an error of ours to (`raise OurError(...) from redacted_exception(exc)`, outside the `except`
    block, so that Python does not chain the original as `__context__`)."""
    if exc is None or not leaks(exc):
        return exc
    copies: dict[int, BaseException] = {}

    def copy(e: BaseException | None) -> BaseException | None:
        if e is None:
            return None
        if id(e) not in copies:
            stand_in = RedactedError(f"{type(e).__module__}.{type(e).__qualname__}: {redact_text(str(e))}")
            copies[id(e)] = stand_in.with_traceback(e.__traceback__)
            stand_in.__cause__, stand_in.__context__ = copy(e.__cause__), copy(e.__context__)
            stand_in.__suppress_context__ = e.__suppress_context__
        return copies[id(e)]

    return copy(exc)


def chained(error: BaseException, cause: BaseException | None) -> BaseException:
    """`error` with `cause`, redacted, as its cause and no other context: `raise chained(err, exc)`."""
    error.__cause__ = redacted_exception(cause)
    error.__context__ = None
    error.__suppress_context__ = True
    return error
