"""Files that are either whole or absent, and their digests: the two file helpers the caches and result folders
share (the engine cache of :mod:`hle_core.runtime.engine_cache`, the fleet results of :mod:`hle_core.bags.fleet`).

``atomic_write_bytes`` writes through a temporary file of the same folder, fsyncs it and ``os.replace`` s it over
the target (atomic on POSIX), so a killed process leaves the old file or the new one, never half of one; the file
gets the permissions ``open()`` would give it (``mkstemp`` creates 0600).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "file_sha256", "update_from_file"]

_CHUNK = 1 << 20


def update_from_file(h: Any, path: str | Path, chunk: int = _CHUNK) -> Any:
    """Feed the bytes of ``path`` to the hash object ``h`` in chunks; returns ``h``."""
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h


def file_sha256(path: str | Path, chunk: int = _CHUNK) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    return update_from_file(hashlib.sha256(), path, chunk).hexdigest()


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (parents created) through a tmp file of the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())                # as open() would create it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
