"""Checkpoints: plain state dicts, written atomically, loaded with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values. It is written to a temporary file in the same
folder, flushed to disk and renamed over the target, so a run killed while saving never leaves a torn file.
Each checkpoint carries the model's *signature* (task, backbone, head shape); loading one into another model
fails with a message naming the file and both signatures instead of a wall of missing keys.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from simmm.errors import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT_VERSION, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, signature: dict | None = None, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    With ``signature`` given, the checkpoint's own signature must match it key by key.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"checkpoint {path}: cannot be read ({type(exc).__name__}: {exc}); expected a "
                              "file written by simmm (a plain state dict saved with torch.save)") from None
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"checkpoint {path}: not a simmm checkpoint (no 'format' entry); "
                              "to start a model from foreign weights use model.pretrained instead")
    if signature is not None:
        check_signature(state.get("signature", {}), signature, path)
    return state


def check_signature(found: dict, expected: dict, path: str | Path) -> None:
    """Fail clearly when a checkpoint belongs to another model."""
    diffs = [f"{key}: checkpoint has {found.get(key)!r}, this recipe builds {value!r}"
             for key, value in expected.items() if found.get(key) != value]
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
