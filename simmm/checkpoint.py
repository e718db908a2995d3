"""Checkpoints: plain state dicts, written atomically, loaded with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values. It is written to a temporary file in the same
folder (``.last.pt.<random>.tmp``), flushed to disk and renamed over the target, and the folder is synced
so the rename itself is on disk: a run killed at any moment leaves under the checkpoint's name either the
previous checkpoint or the new one, never a torn file. A temporary file left by a killed run is never read,
and the next successful save of the same checkpoint removes it. A save that fails (disk full, no permission)
removes its temporary file, keeps the previous checkpoint and raises :class:`CheckpointError` saying why.

Loading never runs code: a file holding Python objects other than tensors and plain values is refused. Each
checkpoint carries the model's *signature* (task, backbone, head shape); loading one into another model fails
with a message naming the file and both signatures instead of a wall of missing keys.
"""
from __future__ import annotations

import errno
import os
import pickle
import re
import shutil
import warnings
from pathlib import Path

import torch

from simmm.atomic import atomic_write
from simmm.errors import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename + fsync of the folder)."""
    path = Path(path)
    try:
        atomic_write(path, lambda handle: torch.save({"format": FORMAT_VERSION, **state}, handle), durable=True)
    except BaseException as exc:
        cause = _os_error(exc)
        if cause is None:
            raise
        raise CheckpointError(_write_failure(path, cause)) from exc
    _sync_folder(path.parent)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a run killed while saving
        stale.unlink(missing_ok=True)


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind a failed write: torch.save reports a full disk as a RuntimeError of its zip writer
    ("unexpected pos ...") whose context is the OSError."""
    while isinstance(exc, Exception):
        if isinstance(exc, OSError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _write_failure(path: Path, exc: OSError) -> str:
    where = f"checkpoint {path}: cannot be written"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        folder = next(p for p in (path.parent, *path.parents) if p.exists())
        free = shutil.disk_usage(folder).free
        return (f"{where}: no space left on the device ({free / 2**20:.0f} MiB free in {folder}); the "
                "checkpoint already there, if any, is untouched. Free some space or choose another "
                "output_dir, then continue with --resume")
    return f"{where} ({exc.strerror or exc}); the checkpoint already there, if any, is untouched"


def _sync_folder(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a power cut (POSIX; some filesystems cannot)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise CheckpointError(f"checkpoint folder {folder}: cannot be synced to disk "
                                  f"({exc.strerror})") from exc
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, signature: dict | None = None, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    With ``signature`` given, the checkpoint's own signature must match it key by key.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    state = _read(path, map_location)
    if not isinstance(state, dict) or "format" not in state:
        held = f"a {type(state).__name__}"
        if isinstance(state, dict):
            held = (f"a dict without simmm's 'format' entry (keys: {', '.join(map(str, list(state)[:3]))}"
                    f"{' ...' if len(state) > 3 else ''})")
        raise CheckpointError(f"checkpoint {path}: not a simmm checkpoint: it holds {held}; "
                              "to start a model from foreign weights use model.pretrained instead")
    if signature is not None:
        found = state.get("signature")
        check_signature(found if isinstance(found, dict) else {}, signature, path)
    return state


def _read(path: Path, map_location):
    """``torch.load(weights_only=True)``, with one clear line for each way a file fails to be a checkpoint."""
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning would only add noise
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL [\w.]+", str(exc))
        if found:
            raise CheckpointError(
                f"checkpoint {path}: refused: it holds Python objects, not only tensors and plain values "
                f"({found.group(0)}), and loading those could run code; nothing of it was loaded. simmm "
                "checkpoints hold state dicts only") from None
        reason = "not a file written by torch.save"
    except Exception as exc:  # torch raises several types for truncated or corrupt files
        first = str(exc).split(". ")[0].strip() or "unexpected end of file"
        reason = f"truncated or corrupt ({type(exc).__name__}: {first})"
    size = path.stat().st_size
    raise CheckpointError(f"checkpoint {path}: cannot be read: {reason if size else 'the file is empty'} "
                          f"({size} bytes); expected a checkpoint written by simmm") from None


def check_signature(found: dict, expected: dict, path: str | Path) -> None:
    """Fail clearly when a checkpoint belongs to another model. A key only one side names (``ciconv``, which
    only a CIConv model's signature holds) must agree too: the other side shows it as ``(not set)``."""
    def shown(signature: dict, key: str) -> str:
        return repr(signature[key]) if key in signature else "(not set)"

    keys = list(expected) + [key for key in found if key not in expected]
    diffs = [f"{key}: checkpoint has {shown(found, key)}, this recipe builds {shown(expected, key)}"
             for key in keys if found.get(key) != expected.get(key)]
    if diffs:
        raise CheckpointError(f"checkpoint {path} is from another model: " + "; ".join(diffs))


def load_module_state(module: torch.nn.Module, state: dict, path: str | Path, name: str) -> None:
    """``module.load_state_dict`` with a clear error naming the file and the first mismatches."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"shape mismatch {', '.join(shapes[:3])}")
        raise CheckpointError(f"checkpoint {path}: weights of '{name}' do not fit this model ({'; '.join(parts)})")
    module.load_state_dict(state)


def load_modules(path: str | Path, modules: dict, signature: dict | None = None) -> None:
    """Load the weights of each named module (``{"model": model, "darkener": net}``) from the simmm checkpoint
    ``path``; every name must be in it (the error names the file and what it holds). A module given as ``None`` is
    only checked for. ``signature``: as :func:`load_checkpoint`."""
    state = load_checkpoint(path, signature=signature, map_location="cpu")
    held = state.get("modules", {})
    for name, module in modules.items():
        if name not in held:
            raise CheckpointError(f"checkpoint {path} holds no '{name}' weights (it has: {', '.join(held)})")
        if module is not None:
            load_module_state(module, held[name], path, name)
