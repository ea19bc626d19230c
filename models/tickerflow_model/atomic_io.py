"""Writes a crash cannot leave half done (write aside, then rename), and the content hashes that name them.

Plain file-system code: the window dataset, the forecast store and the stages all write through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def stable_hash(obj: object, length: int = 16) -> str:
    """Content hash of a JSON-serialisable object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def scratch_directory(final: Path) -> Path:
    """A new, empty, hidden folder beside `final` to build it in (same filesystem, so rename is atomic)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    scratch.mkdir()
    return scratch


def commit_directory(scratch: Path, final: Path) -> None:
    """Rename a finished scratch folder into place; an existing `final` is replaced, never merged."""
    final = Path(final)
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, trash)
        os.replace(scratch, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(scratch, final)


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a scratch folder beside `final`; rename it into place only if the block succeeds.

    Readers only ever see `final` complete or absent. An existing `final` is replaced.
    """
    scratch = scratch_directory(final)
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    commit_directory(scratch, final)


def write_file_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` a hidden file beside `path`, then rename it into place: readers see the old file or
    the new one, never half of one; a failed write leaves no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes_atomic(fs, path: str, data: bytes) -> None:
    """Write `data` to `path` on an fsspec filesystem so readers see the old file or the new one.

    Local files are written aside and renamed; object stores (`s3://`, `gs://`, ...) get the whole file
    in one PUT, which they publish atomically.
    """
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        write_file_atomic(Path(path), lambda tmp: tmp.write_bytes(data))
        return
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, data)
