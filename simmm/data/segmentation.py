"""The segmentation datasets by name, and the check of their trees behind ``simmm data check``.

The four loaders (:mod:`~simmm.data.cityscapes`, :mod:`~simmm.data.darkzurich`,
:mod:`~simmm.data.nighttime_driving`, :mod:`~simmm.data.acdc`) are built on
:class:`~simmm.data.segmentation_dataset.SegmentationDataset`; this module only names them. Imports run one
way: labels, tree, check → segmentation_check → segmentation_dataset → the four datasets → this module.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

from ..errors import SimmmError
from .acdc import ACDCDataset, check_acdc_tree
from .check import DataReport
from .cityscapes import CityscapesDataset, check_cityscapes_tree
from .darkzurich import DarkZurichDataset, check_darkzurich_tree
from .nighttime_driving import NighttimeDrivingDataset, check_nighttime_driving_tree
from .tree import PathLike

__all__ = ["DATASETS", "get_dataset_class", "check_segmentation_tree"]

DATASETS: Dict[str, type] = {"cityscapes": CityscapesDataset, "darkzurich": DarkZurichDataset,
                             "nighttime_driving": NighttimeDrivingDataset, "acdc": ACDCDataset}
"""The dataset class of each canonical name."""

_CHECKERS: Dict[str, Callable[..., DataReport]] = {
    "cityscapes": check_cityscapes_tree, "darkzurich": check_darkzurich_tree,
    "nighttime_driving": check_nighttime_driving_tree, "acdc": check_acdc_tree}

_ALIASES = {"cityscapes": "cityscapes", "darkzurich": "darkzurich", "nighttimedriving": "nighttime_driving",
            "nighttimedrivingtest": "nighttime_driving", "acdc": "acdc"}


def _canonical(name: str) -> str:
    key = "".join(ch for ch in str(name).lower() if ch.isalnum())
    if key not in _ALIASES:
        raise SimmmError(f"unknown segmentation dataset {name!r}; known: cityscapes, darkzurich, "
                         f"nighttime_driving, acdc")
    return _ALIASES[key]


def get_dataset_class(name: str) -> type:
    """The dataset class for ``name`` (``"cityscapes"``, ``"darkzurich"``/``"dark_zurich"``, ...)."""
    return DATASETS[_canonical(name)]


def check_segmentation_tree(
    dataset_name: str,
    root: PathLike,
    splits: Optional[Sequence[str]] = None,
    conditions: Optional[Sequence[str]] = None,
    *,
    verify: bool = True,
    references: bool = False,
    pairs=None,
    max_listed: int = 10,
) -> DataReport:
    """Check a segmentation dataset tree (the work behind ``simmm data check``); never raises for data.

    Args:
        dataset_name: ``"cityscapes"``, ``"darkzurich"``, ``"nighttime_driving"`` or ``"acdc"``.
        root: the dataset root.
        splits: splits to check (defaults: Cityscapes train/val; Dark Zurich train/val/test; ACDC
            train/val/test; Nighttime Driving has only test).
        conditions: Dark Zurich (day/night/twilight) or ACDC (fog/night/rain/snow) conditions (default: the
            ones the release has for each split).
        verify: decode every image completely (finds truncated files).
        references: ACDC: also require each image's ``*_rgb_ref_anon.png`` reference.
        pairs: Dark Zurich day-night pair list: ``None`` checks ``corresp/train/night/`` when present (a
            warning when absent), ``True`` requires it, ``False`` skips it, a path checks that file.
        max_listed: how many files each report entry lists before "... and N more".

    Returns:
        A :class:`~simmm.data.check.DataReport`: ``report.ok``, ``report.problems``, ``print(report.format())``.
    """
    fn = _CHECKERS[_canonical(dataset_name)]
    return fn(root, splits=splits, conditions=conditions, verify=verify, references=references,
              pairs=pairs, max_listed=max_listed)
