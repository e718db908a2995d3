"""The next batch of a training stream, with a clear error when a data-loader worker process dies.

A worker that dies (killed by the kernel for memory, a crash in an image decoder, ``os._exit`` in a dataset)
makes torch raise a bare ``RuntimeError("DataLoader worker (pid(s) ...) exited unexpectedly")``.
:func:`next_batch` turns it into a :class:`~simmm.errors.DataError` that names the stream and says what to do;
every other error passes through untouched.
"""
from __future__ import annotations

from typing import Iterator

from simmm.errors import DataError

__all__ = ["next_batch", "worker_death_error", "worker_died"]


def next_batch(iterator: Iterator, stream: str):
    """``next(iterator)`` of the batch stream named ``stream`` (a player: ``day``, ``darkener``, ...)."""
    try:
        return next(iterator)
    except RuntimeError as exc:
        if not worker_died(exc):
            raise
        raise worker_death_error(exc, stream) from exc


def worker_death_error(exc: RuntimeError, stream: str = "") -> DataError:
    """The :class:`DataError` that says a data-loader worker died (of stream ``stream``, when known)."""
    where = f"data stream '{stream}': " if stream else ""
    return DataError(
        f"{where}a data-loader worker process died ({exc}). The last checkpoint "
        "(checkpoints/last.pt in the run's output_dir) is intact: continue with "
        "`simmm train RECIPE --resume`. If it happens again, the worker was likely killed for memory "
        "(lower num_workers or the batch size) or crashed while reading a file (num_workers: 0 shows the "
        "error where it happens)")


def worker_died(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's report of a data-loader worker process that died."""
    return isinstance(exc, RuntimeError) and str(exc).startswith("DataLoader worker (pid")
