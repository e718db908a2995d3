"""Class pixel statistics of a labelled segmentation set: what ``simmm data stats`` computes and DANIA's class
re-weighting reads (``dania.class_stats``; METHOD.md §5).

The statistics file (JSON)::

    {"format": "simmm-class-stats/1",
     "classes": ["road", ...],            # the train-id class names, in train-id order
     "pixels": [n_0, ...],                # labelled pixels of each class (native label resolution, ignore excluded)
     "shares": [a_0, ...],                # a_k = n_k / sum_j n_j
     "images": 2975,                      # label maps counted
     "source": "cityscapes train at data/cityscapes"}

Only ``shares`` is read back (:func:`read_class_shares`); the counts are there for the record.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from simmm.atomic import atomic_write
from simmm.dania_losses import class_shares
from simmm.data.labels import label_to_train_ids, read_label
from simmm.errors import DataError, RecipeError

__all__ = ["FORMAT", "count_class_pixels", "write_class_stats", "read_class_shares"]

FORMAT = "simmm-class-stats/1"


def count_class_pixels(labels: Sequence[Tuple[Path, str]], num_classes: int,
                       progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Pixels per train id over label files, at their native resolution.

    Args:
        labels: ``(label file, kind)`` pairs, kind ``"labelIds"`` or ``"trainIds"`` (as the datasets record them).
        num_classes: ``C``; ids ``>= C`` other than 255 (ignore) are an error naming the file.
        progress: called with the number of files done.

    Returns:
        ``(C,)`` int64 counts.
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for i, (path, kind) in enumerate(labels):
        train = label_to_train_ids(read_label(path), kind, path)
        ids = train[train != 255].astype(np.int64)
        if ids.size and ids.max() >= num_classes:
            raise DataError(f"label {path} holds train id {int(ids.max())}, but the model has {num_classes} classes")
        counts += np.bincount(ids, minlength=num_classes)
        if progress is not None:
            progress(i + 1)
    return torch.from_numpy(counts)


def write_class_stats(path: Path, counts: torch.Tensor, classes: Sequence[str], images: int, source: str) -> dict:
    """Write the statistics file (module docstring) atomically; returns what was written."""
    stats = {"format": FORMAT, "classes": list(classes), "pixels": [int(n) for n in counts],
             "shares": [float(a) for a in class_shares(counts)], "images": int(images), "source": source}
    atomic_write(path, lambda handle: handle.write(json.dumps(stats, indent=1).encode()))
    return stats


def read_class_shares(path: str | Path, num_classes: int, key: str = "dania.class_stats") -> torch.Tensor:
    """The class shares ``a_k`` of a statistics file, float64 ``(num_classes,)``.

    Raises:
        RecipeError: naming ``key`` and the file: missing or unreadable, not a simmm statistics file, another
            number of classes than the model's, a class without pixels (``-log a_k`` undefined).
    """
    p = Path(path).expanduser()
    try:
        stats = json.loads(p.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{key}: {p} does not exist; expected the JSON that `simmm data stats RECIPE` writes "
                          f"(or leave {key} empty for the shipped Cityscapes shares)") from None
    except (OSError, ValueError) as e:
        raise RecipeError(f"{key}: cannot read {p} as JSON ({e})") from None
    if not isinstance(stats, dict) or stats.get("format") != FORMAT or not isinstance(stats.get("shares"), list):
        raise RecipeError(f"{key}: {p} is not a class statistics file (expected format {FORMAT!r} with a "
                          f"'shares' list, as `simmm data stats` writes)")
    shares = stats["shares"]
    if len(shares) != num_classes:
        raise RecipeError(f"{key}: {p} has shares of {len(shares)} classes; the model has {num_classes}")
    a = torch.tensor([float(x) for x in shares], dtype=torch.float64)
    empty = [stats.get("classes", list(range(num_classes)))[k] for k in (a <= 0).nonzero().flatten().tolist()]
    if empty:
        raise RecipeError(f"{key}: {p}: classes {empty} have no labelled pixels; the re-weighting -log a_k needs "
                          f"every class")
    return a
