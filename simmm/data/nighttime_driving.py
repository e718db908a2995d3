"""Nighttime Driving test set (Dai & Van Gool, 2018): 50 night images with coarse Cityscapes labels.

Tree (METHOD.md §6)::

    ROOT/leftImg8bit/test/night/*_leftImg8bit.png
    ROOT/gtCoarse_daytime_trainvaltest/test/night/*_gtCoarse_labelIds.png

Labels are Cityscapes labelIds (mapped to train ids); when only ``*_gtCoarse_labelTrainIds.png`` files are
present (some conversions ship those), they are used as train ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import SimmmError
from .check import DataReport
from .segmentation_check import scan_groups
from .segmentation_dataset import SegmentationDataset
from .tree import PathLike, TreeGroup, require_root
from .synthetic import dataset_root

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIXES = (("_gtCoarse_labelIds.png", "labelIds"), ("_gtCoarse_labelTrainIds.png", "trainIds"))

__all__ = ["NighttimeDrivingDataset", "nighttime_driving_layout", "nighttime_driving_groups",
           "check_nighttime_driving_tree"]


def nighttime_driving_layout(root: PathLike) -> str:
    return (f"{root}/leftImg8bit/test/night/*{IMAGE_SUFFIX} with labels "
            f"{root}/gtCoarse_daytime_trainvaltest/test/night/*{LABEL_SUFFIXES[0][0]}")


def nighttime_driving_groups(root: Path) -> List[TreeGroup]:
    return [TreeGroup(name="test/night", image_dir=root / "leftImg8bit" / "test" / "night",
                      image_suffix=IMAGE_SUFFIX,
                      label_dir=root / "gtCoarse_daytime_trainvaltest" / "test" / "night",
                      label_suffixes=LABEL_SUFFIXES, labels_required=True)]


class NighttimeDrivingDataset(SegmentationDataset):
    """The Nighttime Driving test set (50 images, coarse labels, 19 Cityscapes classes).

    Args:
        root: dataset root (``NighttimeDrivingTest/``, holding ``leftImg8bit/`` and
            ``gtCoarse_daytime_trainvaltest/``).
        size: ``None`` (native resolution) or ``(H, W)``: bilinear image, nearest label.
        with_labels: load the labels (``False``: images only).

    Items: ``{"image", "target" (int64 train ids, 255 ignore), "path", "name": "test/night/<file>"}``.
    """

    dataset_name = "nighttime_driving"

    def __init__(self, root: PathLike, size=None, with_labels: bool = True):
        layout = nighttime_driving_layout(dataset_root(root))
        root_p = require_root(root, layout)
        self._init_from_group(nighttime_driving_groups(root_p)[0], root_p, layout, size, with_labels,
                              name_root=root_p / "leftImg8bit")


def check_nighttime_driving_tree(root: PathLike, splits: Optional[Sequence[str]] = None, conditions=None, *,
                                 verify: bool = True, references: bool = False, pairs=None,
                                 max_listed: int = 10) -> DataReport:
    """Data check of the Nighttime Driving tree (one folder: test/night)."""
    if splits and list(splits) != ["test"]:
        raise SimmmError(f"Nighttime Driving has only the split 'test', got {list(splits)}")
    if conditions and list(conditions) != ["night"]:
        raise SimmmError(f"Nighttime Driving has only the condition 'night', got {list(conditions)}")
    root_p = dataset_root(root)
    return scan_groups("nighttime_driving", root_p, nighttime_driving_layout(root_p),
                       nighttime_driving_groups(root_p), verify=verify, max_listed=max_listed)
