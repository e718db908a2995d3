"""Dataset trees: the folders of a dataset (:class:`TreeGroup`), finding its images and their labels.

Images are found recursively under a group's image folder by their suffix (``*_leftImg8bit.png``,
``*_rgb_anon.png``), in a stable sorted order; names starting with ``.`` are ignored. An image's label lies at
the same relative path under the label folder, named by the image's stem prefix plus a label suffix
(``aachen_000000_000019`` + ``_gtFine_labelIds.png``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DataError, SimmmError
from .synthetic import dataset_root

PathLike = Union[str, "os.PathLike[str]"]
SizeHW = Tuple[int, int]

__all__ = ["TreeGroup", "find_images", "find_label", "check_choice", "require_root", "normalize_size"]


@dataclass(frozen=True)
class TreeGroup:
    """One folder of a dataset tree (a split, a split/condition) and where its labels are.

    Attributes:
        name: short name used in reports (``"val"``, ``"val/night"``, ``"fog/train"``).
        image_dir: folder searched recursively for ``*<image_suffix>`` files.
        image_suffix: e.g. ``"_leftImg8bit.png"``.
        label_dir: folder of the labels (same relative sub-folders as the images); ``None``: no labels.
        label_suffixes: ``(suffix, kind)`` pairs in order of preference, kind in
            :data:`simmm.data.labels.LABEL_KINDS`.
        labels_required: the data check counts an image without label as a problem.
        reference_dir / reference_suffix: optional paired reference images (ACDC's normal-condition images).
    """

    name: str
    image_dir: Path
    image_suffix: str
    label_dir: Optional[Path] = None
    label_suffixes: Tuple[Tuple[str, str], ...] = ()
    labels_required: bool = False
    reference_dir: Optional[Path] = None
    reference_suffix: Optional[str] = None

    def prefix(self, image: Path) -> str:
        """The stem prefix shared by an image and its label: the file name without :attr:`image_suffix`."""
        return image.name[: -len(self.image_suffix)]

    def label_candidates(self, image: Path) -> List[Tuple[Path, str]]:
        """Where the label of ``image`` may be, in order of preference: ``[(path, kind), ...]``."""
        if self.label_dir is None:
            return []
        rel = image.parent.relative_to(self.image_dir)
        return [(self.label_dir / rel / (self.prefix(image) + suffix), kind)
                for suffix, kind in self.label_suffixes]

    def reference_path(self, image: Path) -> Optional[Path]:
        if self.reference_dir is None or self.reference_suffix is None:
            return None
        rel = image.parent.relative_to(self.image_dir)
        return self.reference_dir / rel / (self.prefix(image) + self.reference_suffix)

    def label_pattern(self) -> str:
        return "|".join(f"*{s}" for s, _ in self.label_suffixes)


def _walk_sorted(folder: Path) -> Iterator[Path]:
    """Files below ``folder`` in a stable (sorted, depth-first) order, skipping names that start with '.'."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith("."):
                yield Path(dirpath) / f


def find_images(folder: Path, suffix: str) -> List[Path]:
    """All files below ``folder`` (recursively) whose name ends with ``suffix``, sorted by path."""
    if not folder.is_dir():
        return []
    return [p for p in _walk_sorted(folder) if p.name.endswith(suffix) and len(p.name) > len(suffix)]


def find_label(group: TreeGroup, image: Path) -> Tuple[Optional[Path], Optional[str], Optional[Path]]:
    """``(label path, kind, expected path)`` for ``image``; the first two are ``None`` when no label exists.

    ``expected path`` is the preferred candidate (the one named in "missing label" messages).
    """
    cands = group.label_candidates(image)
    for path, kind in cands:
        if path.is_file():
            return path, kind, cands[0][0]
    return None, None, (cands[0][0] if cands else None)


def check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    """``value`` if it is one of ``allowed``, else a :class:`SimmmError` naming ``what`` and the choices."""
    if value not in allowed:
        raise SimmmError(f"{what} must be one of {list(allowed)}, got {value!r}")
    return value


def require_root(root: PathLike, layout: str) -> Path:
    """``Path(root)`` if it is a folder, else :class:`DataError` naming it and the expected tree."""
    p = dataset_root(root)
    if not p.is_dir():
        raise DataError(f"dataset root {p} does not exist or is not a folder; expected the tree {layout}")
    return p


def normalize_size(size) -> Optional[SizeHW]:
    """``None`` or ``(H, W)`` positive ints (a list from a recipe is accepted); anything else is an error."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) or not hasattr(size, "__len__") or len(size) != 2:
        raise SimmmError(f"segmentation size must be None or (H, W), got {size!r}")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise SimmmError(f"segmentation size must be positive, got {size!r}")
    return h, w

