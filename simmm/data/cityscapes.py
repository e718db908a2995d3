"""Cityscapes: the dataset and the check of its tree.

Tree (METHOD.md §6)::

    ROOT/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

``*_gtFine_labelIds.png`` holds *labelIds*, mapped to train ids by the label table of
:mod:`simmm.data.labels` (which Dark Zurich, ACDC and Nighttime Driving share).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..errors import SimmmError
from .check import DataReport
from .segmentation_check import scan_groups
from .segmentation_dataset import SegmentationDataset
from .tree import PathLike, TreeGroup, require_root
from .synthetic import dataset_root

__all__ = [
    "CITYSCAPES_SPLITS",
    "cityscapes_layout",
    "cityscapes_groups",
    "CityscapesDataset",
    "check_cityscapes_tree",
]


# ------------------------------------------------------------------------------------------------ dataset

CITYSCAPES_SPLITS: Tuple[str, ...] = ("train", "val", "test")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def cityscapes_layout(root: PathLike, splits: Optional[Sequence[str]] = None) -> str:
    """The expected tree as one line (used in messages)."""
    s = "<split>" if not splits else (splits[0] if len(splits) == 1 else "{" + ",".join(splits) + "}")
    return (f"{root}/leftImg8bit/{s}/<city>/*{IMAGE_SUFFIX} with labels "
            f"{root}/gtFine/{s}/<city>/*{LABEL_SUFFIX}")


def cityscapes_groups(root: Path, splits: Sequence[str] = ("train", "val")) -> List[TreeGroup]:
    """One :class:`TreeGroup` per split."""
    return [TreeGroup(name=str(s), image_dir=root / "leftImg8bit" / s, image_suffix=IMAGE_SUFFIX,
                      label_dir=root / "gtFine" / s, label_suffixes=((LABEL_SUFFIX, "labelIds"),),
                      labels_required=True)
            for s in splits]


class CityscapesDataset(SegmentationDataset):
    """Cityscapes fine annotations: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
    ``gtFine/<split>/<city>/*_gtFine_labelIds.png`` (pairs matched by the stem prefix).

    Args:
        root: dataset root (holding ``leftImg8bit/`` and ``gtFine/``).
        split: ``"train"``, ``"val"`` (or ``"test"``, whose public labels are empty).
        size: ``None`` (native 1024×2048) or ``(H, W)``: bilinear (antialiased) image, nearest label.
        with_labels: load ``gtFine`` labels (``False``: images only, no ``"target"``).

    Items: ``{"image": float32 (3, H, W) in [0, 1], "target": int64 (H, W) train ids (255 ignore),
    "path": str, "name": "<split>/<city>/<file>"}``.

    Raises:
        DataError: missing root, split folder or label folder, an image without label (naming the expected
            label path and the layout); when an item is loaded: a label of another size than its image, a
            labelId outside the table, unreadable files.
    """

    dataset_name = "cityscapes"

    def __init__(self, root: PathLike, split: str = "train", size=None, with_labels: bool = True):
        layout = cityscapes_layout(dataset_root(root), [split])
        root_p = require_root(root, layout)
        self.split = str(split)
        self._init_from_group(cityscapes_groups(root_p, [self.split])[0], root_p, layout, size, with_labels,
                              name_root=root_p / "leftImg8bit")


def check_cityscapes_tree(root: PathLike, splits: Optional[Sequence[str]] = None, conditions=None, *,
                          verify: bool = True, references: bool = False, pairs=None,
                          max_listed: int = 10) -> DataReport:
    """Data check of a Cityscapes tree (default splits: train, val); see
    :func:`simmm.data.segmentation.check_segmentation_tree`."""
    if conditions:
        raise SimmmError("Cityscapes has no conditions; leave `conditions` unset")
    splits = list(splits) if splits else ["train", "val"]
    root_p = dataset_root(root)
    return scan_groups("cityscapes", root_p, cityscapes_layout(root_p, splits),
                       cityscapes_groups(root_p, splits), verify=verify, max_listed=max_listed)
