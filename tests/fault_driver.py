"""Run the simmm command line with a fault injected into the N-th save of ``last.pt``, for test_faults.py.

    python tests/fault_driver.py FAULT N ARGS...      # ARGS as for `python -m simmm`

FAULT is one of

* ``none``: no fault (the clean runs go through the same process set-up as the faulty ones);
* ``kill-step``: SIGKILL as the N-th save begins: the step is computed, nothing of it is on disk;
* ``kill-write``: SIGKILL halfway through writing the N-th save's temporary file (half of it synced to disk);
* ``kill-rename``: SIGKILL once the temporary file is complete and synced, before it is renamed over last.pt;
* ``disk-full``: the N-th save's temporary file is the device /dev/full, whose writes fail with ENOSPC as a
  full disk's do.

A save is recognised by the temporary file it asks ``tempfile.mkstemp`` for (``.last.pt.*.tmp``), so the
driver needs nothing of the engine's internals.
"""
import io
import os
import signal
import sys
import tempfile

import torch

from simmm.cli import main


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def install(fault: str, n: int) -> None:
    real_mkstemp, real_save, real_replace = tempfile.mkstemp, torch.save, os.replace
    saves = 0

    def torn_save(obj, handle, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])
        handle.flush()
        os.fsync(handle.fileno())
        die()

    def replace_then_die(src, dst, *args, **kwargs):
        if str(src).endswith(".tmp"):
            die()
        return real_replace(src, dst, *args, **kwargs)

    def mkstemp(*args, prefix=None, **kwargs):
        nonlocal saves
        if prefix == ".last.pt.":
            saves += 1
        if saves != n or prefix != ".last.pt.":
            return real_mkstemp(*args, prefix=prefix, **kwargs)
        if fault == "kill-step":
            die()
        fd, name = real_mkstemp(*args, prefix=prefix, **kwargs)
        if fault == "kill-write":
            torch.save = torn_save
        elif fault == "kill-rename":
            os.replace = replace_then_die
        elif fault == "disk-full":
            os.close(fd)
            fd = os.open("/dev/full", os.O_WRONLY)
        return fd, name

    if fault not in ("none", "kill-step", "kill-write", "kill-rename", "disk-full"):
        raise SystemExit(f"fault_driver: unknown fault {fault!r}")
    tempfile.mkstemp = mkstemp


if __name__ == "__main__":
    install(sys.argv[1], int(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
