"""Files that are never seen half-written: write to a temporary file in the same folder, then rename it over the target.

Readers see the old file or the new one, never a part of either; several processes writing the same file at once
(the ranks of a distributed run filling a cache) each use their own temporary file, and the last rename wins.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["atomic_write"]


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], durable: bool = False) -> None:
    """Call ``write(handle)`` on a temporary file next to ``path``, then rename it to ``path``. ``durable``: also
    flush it to disk before the rename (checkpoints). On any error the temporary file is removed and ``path`` is
    left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it (mkstemp makes it private: 0600)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
